"""The benchmarked models in PyTorch, the same networks and optimizers as lecturenn's configs
(benchmarks/bench_models.py), each as ``build(spec) -> (step, epoch)``: one training step on one
batch, and one epoch of ``spec["batches"]`` batches the way PyTorch trains, a Python loop.

Run as a child process by bench_models.py (so that PyTorch's OpenMP threads and XLA's thread pool
never compete for the cores): ``python torch_models.py MODEL --threads T --rounds R``, which
prints the seconds of a step and of an epoch, per round, as one JSON line.

PyTorch runs with subnormal floats flushed to zero (``torch.set_flush_denormal(True)``, unless
``--keep-denormals``), as XLA's CPU backend computes: a product with a subnormal result gives 0
in a jitted JAX function. Without it PyTorch computes subnormals exactly, which x86 cores do
slowly, and a model whose numbers underflow (the tanh RNN LM on an Intel Xeon: 1.0 s a step
against 0.1 s) is timed doing other arithmetic than lecturenn.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def _batches(spec: dict, rng) -> list:
    return spec["make"](rng)


def _adam(model, lr):
    return torch.optim.Adam(model.parameters(), lr=lr)


# --- the models --------------------------------------------------------------------------------


def window_tagger(spec):
    V, S, K, C = spec["vocab"], spec["suffixes"], spec["tags"], 6
    W, CAP, SUF, WIN, H = spec["word_dim"], spec["caps_dim"], spec["suffix_dim"], 5, spec["hidden"]
    half = WIN // 2

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.words, self.caps = nn.Embedding(V, W), nn.Embedding(C, CAP)
            self.suffix = nn.Embedding(S, SUF)
            self.hidden = nn.Linear(WIN * (W + CAP + SUF), H)
            self.out = nn.Linear(H, K)
            self.A, self.A0 = nn.Parameter(torch.zeros(K, K)), nn.Parameter(torch.zeros(K))

        def forward(self, words, caps, suffix):
            def window(table, ids):
                return table(F.pad(ids, (half, half)).unfold(1, WIN, 1))

            x = torch.cat(
                [window(self.words, words), window(self.caps, caps), window(self.suffix, suffix)],
                -1,
            ).flatten(2)
            x = F.dropout(x, spec["input_dropout"], self.training)
            return self.out(F.dropout(F.hardtanh(self.hidden(x)), spec["dropout"], self.training))

    def sll(f, A, A0, tags, mask):
        """C&W eq. 15: the forward algorithm over positions (padding kept by ``mask``, as
        nn/sequence.py does), differentiated by autograd."""
        alpha = A0 + f[:, 0]
        for t in range(1, f.shape[1]):
            new = torch.logsumexp(alpha[:, :, None] + A[None], dim=1) + f[:, t]
            alpha = torch.where(mask[:, t, None] > 0, new, alpha)
        emissions = (f.gather(2, tags[..., None])[..., 0] * mask).sum(1)
        transitions = (A[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(1)
        path = emissions + transitions + A0[tags[:, 0]] * mask[:, 0]
        return (torch.logsumexp(alpha, 1) - path).mean()

    model = Tagger()
    opt = _adam(model, 1e-3)

    def loss(batch):
        words, caps, suffix, tags, mask = batch
        f = model(words, caps, suffix)
        if spec.get("scoring", "sll") == "softmax":
            return F.cross_entropy(f.reshape(-1, K), tags.reshape(-1))
        return sll(f, model.A, model.A0, tags, mask)

    return model, opt, loss


def nplm(spec):
    V, n, m, h = spec["vocab"], spec["context"], spec["embed_dim"], spec["hidden_dim"]

    class NPLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.C = nn.Embedding(V, m)
            self.hidden, self.out = nn.Linear(n * m, h), nn.Linear(h, V)

        def forward(self, ids):
            x = F.dropout(self.C(ids).flatten(1), spec["embed_dropout"], self.training)
            return self.out(F.dropout(torch.tanh(self.hidden(x)), spec["dropout"], self.training))

    model = NPLM()
    opt = _adam(model, 1e-3)
    return model, opt, lambda batch: F.cross_entropy(model(batch[0]), batch[1])


class RecurrentLM(nn.Module):
    """Embedding → stacked RNN/LSTM with dropout on the non-recurrent connections → softmax."""

    def __init__(self, spec):
        super().__init__()
        V, E, H, L = spec["vocab"], spec["embed_dim"], spec["hidden_dim"], spec["num_layers"]
        self.embed = nn.Embedding(V, E)
        rnn = nn.LSTM if spec["cell"] == "lstm" else nn.RNN
        self.rnn = rnn(E, H, L, dropout=spec["dropout"] if L > 1 else 0.0)
        self.out = nn.Linear(H, V)
        if spec["tie"]:
            self.out.weight = self.embed.weight
        self.dropout = spec["dropout"]

    def forward(self, ids):  # ids (T, B)
        x = F.dropout(self.embed(ids), self.dropout, self.training)
        hs, _ = self.rnn(x)
        return self.out(F.dropout(hs, self.dropout, self.training)).flatten(0, 1)


def recurrent_lm(spec):
    model = RecurrentLM(spec)
    if spec["optim"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
    else:
        opt = _adam(model, 1e-3)
    scale = spec["num_steps"] if spec["sum_steps"] else 1.0

    def loss(batch):
        x, y = batch
        return F.cross_entropy(model(x), y.flatten()) * scale

    return model, opt, loss


def cnn(spec):
    layers, cin = [], 1
    for cout in spec["channels"]:
        layers += [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        cin = cout
    side = 28 // 2 ** len(spec["channels"])
    model = nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(side * side * cin, spec["dense"]),
        nn.ReLU(),
        nn.Dropout(spec["dropout"]),
        nn.Linear(spec["dense"], 10),
    )
    opt = _adam(model, 1e-3)
    return model, opt, lambda batch: F.cross_entropy(model(batch[0]), batch[1])


BUILDERS = {"window_tagger": window_tagger, "nplm": nplm, "recurrent_lm": recurrent_lm, "cnn": cnn}


def batches_of(spec: dict, count: int) -> list:
    """The same random batches (shapes, vocabularies) the JAX side uses, as torch tensors."""
    rng = np.random.default_rng(0)
    kind = spec["builder"]
    out = []
    for _ in range(count):
        if kind == "window_tagger":
            shape = (spec["sentences"], spec["length"])
            out.append(
                (
                    torch.from_numpy(rng.integers(1, spec["vocab"], shape)),
                    torch.from_numpy(rng.integers(1, 6, shape)),
                    torch.from_numpy(rng.integers(1, spec["suffixes"], shape)),
                    torch.from_numpy(rng.integers(0, spec["tags"], shape)),
                    torch.ones(shape),  # every position a real token, as on the JAX side
                )
            )
        elif kind == "nplm":
            out.append(
                (
                    torch.from_numpy(
                        rng.integers(0, spec["vocab"], (spec["batch"], spec["context"]))
                    ),
                    torch.from_numpy(rng.integers(0, spec["vocab"], spec["batch"])),
                )
            )
        elif kind == "recurrent_lm":
            ids = rng.integers(0, spec["vocab"], (spec["num_steps"] + 1, spec["batch"]))
            out.append((torch.from_numpy(ids[:-1]), torch.from_numpy(ids[1:])))
        else:
            x = rng.random((spec["batch"], 1, 28, 28), dtype=np.float32)
            out.append((torch.from_numpy(x), torch.from_numpy(rng.integers(0, 10, spec["batch"]))))
    return out


def timings(
    spec: dict, threads: int, rounds: int, number: int, flush_denormal: bool = True
) -> dict:
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)
    torch.manual_seed(0)
    model, opt, loss_of = BUILDERS[spec["builder"]](spec)
    model.train()
    data = batches_of(spec, spec["batches"])

    def step(batch):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(batch)
        loss.backward()
        if spec.get("clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])
        opt.step()
        return loss.item()

    def epoch():
        return [step(data[i]) for i in torch.randperm(len(data)).tolist()][-1]

    step(data[0])
    epoch()  # warm up
    steps, epochs = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(number):
            step(data[i % len(data)])
        steps.append((time.perf_counter() - start) / number)
        start = time.perf_counter()
        epoch()
        epochs.append(time.perf_counter() - start)
    return {
        "step": steps,
        "epoch": epochs,
        "torch": torch.__version__,
        "flush_denormal": flush_denormal,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="JSON of the model's settings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--number", type=int, default=5)
    parser.add_argument(
        "--keep-denormals", action="store_true", help="compute subnormals exactly (slow on x86)"
    )
    args = parser.parse_args()
    spec = json.loads(args.spec)
    out = timings(spec, args.threads, args.rounds, args.number, not args.keep_denormals)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
