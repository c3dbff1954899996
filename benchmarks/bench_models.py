"""Training speed of every lecture model against the same network in PyTorch, step and epoch.

    python benchmarks/bench_models.py [--rounds 3] [--only lstm_ptb_small cnn_fashion]
    # writes benchmarks/results/models.json; with --only, replaces those models' rows in it

Each model is the committed config's network at its real sizes (vocabulary, hidden units,
batch), fed random batches of the right shapes:

- window_tagger: configs/ner_window.toml (SLL, 16 sentences of 32 tokens);
- nplm: configs/ptb_nplm.toml; rnn_lm: configs/ptb_rnn.toml (tanh 512, tied);
- lstm_ptb_small: configs/ptb_lstm_small.toml; char_lstm: configs/char_shakespeare.toml;
- cnn_fashion: configs/cnn_fashion.toml (batch 128 of 28×28 images).

Measured per round, interleaved: lecturenn's training step (hand-written gradients, and
``jax.grad``, the two in the opposite order every other round), called from Python; lecturenn's
epoch of ``BATCHES`` batches the way ``lecturenn run`` trains (the config's epoch driver); then
PyTorch 2.13 in a child process with 1 and with 2 threads (step and epoch, a Python loop over the
batches). The ratio lecturenn / PyTorch uses the faster PyTorch setting of each round; every figure
is [median, min, max] over the rounds, with the load average before and after.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from timing import (
    block,
    each_with_load,
    in_round_order,
    machine,
    ratio_spread,
    spread,
    time_rounds,
    write_json,
)

from lecturenn import _malloc
from lecturenn.cli import Parser
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import schemas
from lecturenn.experiments.tasks.base import make_optimizer
from lecturenn.train import epochs as epochs_lib
from lecturenn.train.step import make_step

ROOT = Path(__file__).resolve().parents[1]
BATCHES = 20  # an "epoch" of the benchmark

# name: (config, data sizes filled into the model, torch spec extras)
MODELS = {
    "window_tagger": (
        "ner_window",
        {"vocab_size": 20_000, "num_tags": 17, "suffix_vocab_size": 3_000},
    ),
    "nplm": ("ptb_nplm", {"vocab_size": 10_000}),
    "rnn_lm": ("ptb_rnn", {"vocab_size": 10_000}),
    "lstm_ptb_small": ("ptb_lstm_small", {"vocab_size": 10_000}),
    "char_lstm": ("char_shakespeare", {"vocab_size": 65}),
    "cnn_fashion": ("cnn_fashion", {"input_shape": (28, 28, 1), "num_classes": 10}),
    "lstm_ptb_medium": ("ptb_lstm_medium", {"vocab_size": 10_000}),
}
DEFAULT = [name for name in MODELS if name != "lstm_ptb_medium"]  # medium: bench_lm.py
SENTENCES, LENGTH = 16, 32


class Bench:
    """One model: its lecturenn step and epoch, random data, and the PyTorch spec."""

    def __init__(self, name: str):
        config, sizes = MODELS[name]
        self.cfg = config_lib.load_config(ROOT / "configs" / f"{config}.toml")
        model_cfg = dataclasses.replace(self.cfg.model, **sizes)
        module = schemas.MODELS[schemas.kind_of(model_cfg)].module
        self.model = module.make(model_cfg)
        self.mc = model_cfg
        self.batch_size = self.cfg.train.batch_size
        params, state = self.model.init(jax.random.PRNGKey(0))
        labels = self.model.labels(params) if self.model.labels else None
        self.optimizer = make_optimizer(self.cfg.optim, params, labels, steps_per_epoch=1000)
        self.params, self.state = params, state
        self.opt_state = self.optimizer.init(params)
        self.kind, self.data, self.batch, self.items = self._data(name)
        self.key = jax.random.PRNGKey(1)

    def _data(self, name):
        rng = np.random.default_rng(0)
        mc, n = self.mc, BATCHES
        if name == "window_tagger":
            shape = (n * SENTENCES, LENGTH)
            data = {
                "words": rng.integers(1, mc.vocab_size, shape),
                "caps": rng.integers(1, 6, shape),
                "suffix": rng.integers(1, mc.suffix_vocab_size, shape),
                "tags": rng.integers(0, mc.num_tags, shape),
                "mask": np.ones(shape, np.float32),
                "lengths": np.full(n * SENTENCES, LENGTH),
            }
            data = {
                k: jnp.asarray(v.astype(np.float32 if k == "mask" else np.int32))
                for k, v in data.items()
            }
            batch = {k: v[:SENTENCES] for k, v in data.items() if k != "lengths"}
            self.batch_size = SENTENCES
            return "bucketed", data, batch, SENTENCES * LENGTH
        if name == "nplm":
            x = rng.integers(0, mc.vocab_size, (n * self.batch_size, mc.context))
            y = rng.integers(0, mc.vocab_size, n * self.batch_size)
            data = {"x": jnp.asarray(x, jnp.int32), "y": jnp.asarray(y, jnp.int32)}
            return (
                "shuffled",
                data,
                {k: v[: self.batch_size] for k, v in data.items()},
                self.batch_size,
            )
        if name == "cnn_fashion":
            x = rng.random((n * self.batch_size, 28, 28, 1), dtype=np.float32)
            y = rng.integers(0, 10, n * self.batch_size)
            data = {"x": jnp.asarray(x), "y": jnp.asarray(y, jnp.int32)}
            return (
                "shuffled",
                data,
                {k: v[: self.batch_size] for k, v in data.items()},
                self.batch_size,
            )
        steps = self.cfg.data.num_steps
        ids = rng.integers(0, mc.vocab_size, (n, self.batch_size, steps + 1))
        data = {
            "x": jnp.asarray(ids[..., :-1], jnp.int32),
            "y": jnp.asarray(ids[..., 1:], jnp.int32),
        }
        return "streams", data, {"x": data["x"][0], "y": data["y"][0]}, self.batch_size * steps

    def step(self, grads: str):
        step, args = self.jitted_step(grads)
        return lambda: step(*args)

    def jitted_step(self, grads: str):
        """The jitted step and the arguments it is timed with."""
        step = make_step(self.model, self.optimizer, grads)
        return step, (self.params, self.initial_state(step), self.opt_state, self.batch, self.key)

    def initial_state(self, step):
        """The state a step starts from; for streams a carried recurrent state (zeros), as in
        training."""
        if self.kind != "streams":
            return self.state
        shapes = jax.eval_shape(step, self.params, {}, self.opt_state, self.batch, self.key)[1]
        return jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

    def epoch(self):
        step = make_step(self.model, self.optimizer, "manual", jit=False)
        driver = self.cfg.train.driver
        if self.kind == "bucketed":
            epoch = epochs_lib.bucketed(
                step,
                lengths=np.asarray(self.data["lengths"]),
                batch_size=self.batch_size,
                driver=driver,
            )
        elif self.kind == "streams":
            epoch = epochs_lib.streams(step, driver=driver)
        else:
            epoch = epochs_lib.shuffled(
                step,
                num_examples=BATCHES * self.batch_size,
                batch_size=self.batch_size,
                driver=driver,
            )
        return lambda: epoch(self.params, self.state, self.opt_state, self.data, self.key)

    def torch_spec(self, name: str) -> dict:
        mc, spec = self.mc, {"batches": BATCHES, "batch": self.batch_size}
        if name == "window_tagger":
            return {
                **spec,
                "builder": "window_tagger",
                "vocab": mc.vocab_size,
                "suffixes": mc.suffix_vocab_size,
                "tags": mc.num_tags,
                "word_dim": mc.word_dim,
                "caps_dim": mc.caps_dim,
                "suffix_dim": mc.suffix_dim,
                "hidden": mc.hidden,
                "dropout": mc.dropout,
                "input_dropout": mc.input_dropout,
                "scoring": mc.scoring,
                "sentences": SENTENCES,
                "length": LENGTH,
            }
        if name == "nplm":
            return {
                **spec,
                "builder": "nplm",
                "vocab": mc.vocab_size,
                "context": mc.context,
                "embed_dim": mc.embed_dim,
                "hidden_dim": mc.hidden_dim,
                "dropout": mc.dropout,
                "embed_dropout": mc.embed_dropout,
            }
        if name == "cnn_fashion":
            return {
                **spec,
                "builder": "cnn",
                "channels": list(mc.channels),
                "dense": mc.dense,
                "dropout": mc.dropout,
            }
        return {
            **spec,
            "builder": "recurrent_lm",
            "vocab": mc.vocab_size,
            "cell": mc.cell,
            "embed_dim": mc.embed_dim,
            "hidden_dim": mc.hidden_dim,
            "num_layers": mc.num_layers,
            "dropout": mc.dropout,
            "tie": mc.tie_weights,
            "num_steps": self.cfg.data.num_steps,
            "optim": self.cfg.optim.name,
            "sum_steps": mc.loss_reduction == "sum_steps",
            "clip": self.cfg.optim.clip_global_norm,
        }


def seconds(fn, number: int) -> float:
    """Seconds per call over ``number`` calls, after one untimed call."""
    return time_rounds({"fn": fn}, repeats=1, number=number)["fn"][0]


def torch_child(argv: list[str], threads: int, timeout: int = 1800) -> dict | None:
    """The JSON line a PyTorch child process prints (``python *argv``, ``threads`` threads, the
    malloc settings ``import lecturenn`` applied here); None where PyTorch is not installed."""
    env = {**os.environ, **_malloc.environment(), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, *argv, "--threads", str(threads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if done.returncode != 0:
        if "No module named 'torch'" in done.stderr:
            return None
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_round(spec: dict, threads: int, number: int) -> dict | None:
    script = str(Path(__file__).parent / "torch_models.py")
    return torch_child([script, json.dumps(spec), "--number", str(number)], threads)


def measure(name: str, rounds: int, number: int, bench: Bench | None = None) -> dict:
    """The model's step and epoch against PyTorch's (module docstring); ``bench``: the model's
    ``Bench`` where the caller has built it already."""
    bench = bench or Bench(name)
    calls = {"manual": bench.step("manual"), "autodiff": bench.step("autodiff")}
    epoch = bench.epoch()
    for fn in (*calls.values(), epoch):
        block(fn())  # compile
    samples = {k: [] for k in ("manual", "autodiff", "epoch", "torch_step", "torch_epoch")}
    torch_version, flush, threads_used = None, None, []
    for round_ in range(rounds):
        for grads, fn in in_round_order(calls, round_):
            samples[grads].append(seconds(fn, number))
        samples["epoch"].append(seconds(epoch, 1))
        best = None
        for threads in (1, 2):
            result = torch_round(bench.torch_spec(name), threads, number)
            if result is None:
                break
            torch_version, flush = result["torch"], result["flush_denormal"]
            if best is None or result["step"][0] < best[0]:
                best = (result["step"][0], result["epoch"][0], threads)
        if best is not None:
            samples["torch_step"].append(best[0])
            samples["torch_epoch"].append(best[1])
            threads_used.append(best[2])
    row = {
        "config": f"configs/{MODELS[name][0]}.toml",
        "items_per_step": bench.items,
        "epoch_batches": BATCHES,
        "seconds_median_min_max": {k: spread(v) for k, v in samples.items() if v},
        "manual_over_autodiff_time": ratio_spread(samples["manual"], samples["autodiff"]),
    }
    if samples["torch_step"]:
        row["step_speedup_over_pytorch"] = ratio_spread(samples["torch_step"], samples["manual"])
        row["epoch_speedup_over_pytorch"] = ratio_spread(samples["torch_epoch"], samples["epoch"])
        row["pytorch_threads_of_the_faster_setting"] = threads_used
        row["torch"] = torch_version
        row["pytorch_flushes_subnormals_to_zero"] = flush  # as XLA CPU does (torch_models.py)
    return row


def summary_line(name: str, r: dict) -> str:
    text = f"{name:15s} manual/autodiff time {r['manual_over_autodiff_time'][0]:.2f}"
    if "step_speedup_over_pytorch" in r:
        text += (
            f", over PyTorch: step {r['step_speedup_over_pytorch'][0]:.2f}x "
            f"{r['step_speedup_over_pytorch'][1:]}, epoch "
            f"{r['epoch_speedup_over_pytorch'][0]:.2f}x {r['epoch_speedup_over_pytorch'][1:]}"
        )
    return text


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--number", type=int, default=5, help="steps per timed call")
    parser.add_argument("--only", nargs="*", default=DEFAULT, choices=list(MODELS))
    parser.add_argument("--out", default="models", help="benchmarks/results/OUT.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = each_with_load(
        args.only, lambda name: measure(name, args.rounds, args.number), summary_line
    )
    path = Path(__file__).parent / "results" / f"{args.out}.json"
    kept = json.loads(path.read_text())["models"] if path.exists() else {}
    head = {
        "benchmark": "model_training_speed",
        "machine": machine(),
        "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "rounds": args.rounds,
        "goals": {"speedup_over_pytorch_min": 1.5, "manual_over_autodiff_time_max": 1.0},
    }
    # models not measured this time keep their rows, each with the load it was measured under
    print(write_json(args.out, {**head, "models": {**kept, **rows}}))


if __name__ == "__main__":
    main()
