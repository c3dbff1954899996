"""Tokens/s of the PTB-small LSTM training step (2×200 LSTM, vocab 10k, batch 20 × 20 steps, SGD
with global-norm clipping): lecturenn's hand-written BPTT vs jax.grad of the same model vs
PyTorch's CPU ``nn.LSTM`` of the same sizes (2 threads), one run, measured round-robin.

    python benchmarks/bench_lm.py               # writes benchmarks/results/lm.json

Goals: manual ≤ 1.1× jax.grad time; lecturenn ≥ 1.0× PyTorch tokens/s.
The machine's load average is recorded with the figures: on a shared CPU, compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
from timing import block, machine, time_calls, write_json

from lecturenn.models import rnn_lm
from lecturenn.optim.build import build_optimizer
from lecturenn.train.step import make_step

VOCAB, EMBED, HIDDEN, LAYERS, BATCH, STEPS = 10_000, 200, 200, 2, 20, 20


def jax_steps(
    hidden: int = HIDDEN, steps: int = STEPS, dropout: float = 0.0, grads=("manual", "autodiff")
) -> dict:
    cfg = rnn_lm.RNNLMConfig(
        vocab_size=VOCAB, embed_dim=hidden, hidden_dim=hidden, num_layers=LAYERS, dropout=dropout
    )
    model = rnn_lm.make(cfg)
    params, _ = model.init(jax.random.PRNGKey(0))
    optimizer = build_optimizer("sgd", 1.0, clip_global_norm=5.0)
    opt_state = optimizer.init(params)
    ids = np.random.default_rng(0).integers(0, VOCAB, (BATCH, steps + 1))
    batch = {"x": jax.numpy.asarray(ids[:, :-1]), "y": jax.numpy.asarray(ids[:, 1:])}
    state = rnn_lm.zero_state(cfg, BATCH)
    key = jax.random.PRNGKey(1)
    calls = {}
    for g in grads:
        step = make_step(model, optimizer, g)
        calls[f"lecturenn_{g}"] = lambda s=step: s(params, state, opt_state, batch, key)
    return calls


def torch_step():
    """Zaremba's small model in PyTorch: loss = Σ_t mean_b CE, SGD lr 1, clip norm 5."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, EMBED)
            self.lstm = torch.nn.LSTM(EMBED, HIDDEN, LAYERS)
            self.out = torch.nn.Linear(HIDDEN, VOCAB)

        def forward(self, ids, state):
            hs, state = self.lstm(self.embed(ids), state)
            return self.out(hs.reshape(-1, HIDDEN)), state

    model = LM()
    for p in model.parameters():
        torch.nn.init.uniform_(p, -0.1, 0.1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, VOCAB, (STEPS + 1, BATCH)))
    x, y = ids[:-1], ids[1:].reshape(-1)
    zeros = torch.zeros(LAYERS, BATCH, HIDDEN)
    state = (zeros, zeros)

    def step():
        logits, _ = model(x, state)
        loss = torch.nn.functional.cross_entropy(logits, y) * STEPS
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return loss.item()

    return step, torch.__version__


def cpu_seconds(fn, number: int) -> float:
    """Process CPU seconds per call (all threads): less sensitive to other jobs than wall time."""
    block(fn())
    start = time.process_time()
    for _ in range(number):
        out = fn()
    block(out)
    return (time.process_time() - start) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--number", type=int, default=10)
    args = parser.parse_args()
    calls = jax_steps()
    torch_version = None
    try:
        calls["pytorch"], torch_version = torch_step()
    except ImportError:
        print("torch is not installed: timing lecturenn only")
    load_before = os.getloadavg()
    seconds = time_calls(calls, repeats=args.repeats, number=args.number)
    cpu = {name: cpu_seconds(fn, args.number) for name, fn in calls.items()}
    load_after = os.getloadavg()
    tokens = BATCH * STEPS
    rows = {
        name: {
            "ms_per_step": 1e3 * s,
            "tokens_per_s": tokens / s,
            "cpu_ms_per_step": 1e3 * cpu[name],
        }
        for name, s in seconds.items()
    }
    # Zaremba medium (2×650, 35 steps, dropout 0.5): the step time behind its run-time estimate
    medium_calls = jax_steps(hidden=650, steps=35, dropout=0.5, grads=("manual",))
    medium = time_calls(medium_calls, repeats=max(args.repeats // 2, 1), number=3)
    medium_s = medium["lecturenn_manual"]
    windows = (929_589 // BATCH - 1) // 35  # PTB train tokens -> windows of 20 × 35
    rows["medium_2x650_T35_manual"] = {
        "ms_per_step": 1e3 * medium_s,
        "tokens_per_s": BATCH * 35 / medium_s,
        "cpu_ms_per_step": 1e3 * cpu_seconds(medium_calls["lecturenn_manual"], 3),
        "estimated_39_epochs_hours": 39 * windows * medium_s / 3600,
    }
    for name, row in rows.items():
        print(
            f"{name:24s} {row['ms_per_step']:8.1f} ms/step {row['tokens_per_s']:8.0f} tokens/s "
            f"{row['cpu_ms_per_step']:8.1f} CPU ms/step"
        )
    ratios = {
        "manual_over_autodiff_time": seconds["lecturenn_manual"] / seconds["lecturenn_autodiff"]
    }
    if "pytorch" in seconds:
        ratios["manual_over_pytorch_tokens_per_s"] = (
            seconds["pytorch"] / seconds["lecturenn_manual"]
        )
        ratios["autodiff_over_pytorch_tokens_per_s"] = (
            seconds["pytorch"] / seconds["lecturenn_autodiff"]
        )
    print(ratios)
    path = write_json(
        "lm",
        {
            "benchmark": "ptb_small_lstm_training_step",
            "shape": {
                "vocab": VOCAB,
                "embed": EMBED,
                "hidden": HIDDEN,
                "layers": LAYERS,
                "batch": BATCH,
                "steps": STEPS,
            },
            "machine": {**machine(), "torch": torch_version, "torch_threads": 2},
            "load_average_1_5_15min": {"before": load_before, "after": load_after},
            "goals": {"manual_over_autodiff_time_max": 1.1, "manual_over_pytorch_min": 1.0},
            "results": rows,
            "ratios": ratios,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
