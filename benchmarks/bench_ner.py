"""Training tokens/s of the window tagger step (softmax and SLL): lecturenn's hand-written
backprop, lecturenn with jax.grad, and the same network in PyTorch on the CPU, in one run.

    python benchmarks/bench_ner.py            # writes benchmarks/results/ner.json

The network is configs/ner_window.toml's: window 5 over 50-d words + 5-d caps + 10-d suffixes,
300 hard-tanh units, dropout 0.5, 17 IOBES tags, a 20k-word vocabulary, Adam; a batch is B
sentences padded to L positions, every position a real token. PyTorch (torch_models.py's
window_tagger, in a child process so that its OpenMP threads and XLA's never share the process)
runs with 2 threads (the machine's cores) and with 1 (on a loaded machine two OpenMP threads can
run far slower than one), dense embedding gradients (as ours) and torch.optim.Adam; its SLL is
the same forward algorithm (a loop over positions of logsumexp, masked) differentiated by
autograd. The ratios compare lecturenn with the faster of the two PyTorch settings.
Every candidate is timed in interleaved rounds (``--repeats``); each row keeps [median, min, max]
over the rounds, ratios taken round by round, and the load average before and after it.
Goals: lecturenn ≥ 1.5× PyTorch; hand-written gradients ≤ 1.0× the time of ``jax.grad``.
"""

from __future__ import annotations

import os
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from bench_models import torch_round
from timing import in_round_order, machine, ratio_spread, spread, time_rounds, write_json

from lecturenn.cli import Parser
from lecturenn.models import window_tagger
from lecturenn.optim.transforms import adam
from lecturenn.train.step import make_step

VOCAB, SUFFIXES, TAGS, CAPS = 20_000, 3_000, 17, 6
WORD, CAP, SUFFIX, WINDOW, HIDDEN, DROPOUT = 50, 5, 10, 5, 300, 0.5


def _batch(num_sentences: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (num_sentences, length)
    return {
        "words": rng.integers(1, VOCAB, shape, dtype=np.int32),
        "caps": rng.integers(1, CAPS, shape, dtype=np.int32),
        "suffix": rng.integers(1, SUFFIXES, shape, dtype=np.int32),
        "tags": rng.integers(0, TAGS, shape, dtype=np.int32),
        "mask": np.ones(shape, np.float32),
    }


def lecturenn_steps(scoring: str, batch: dict) -> dict:
    cfg = window_tagger.WindowTaggerConfig(
        vocab_size=VOCAB,
        num_tags=TAGS,
        word_dim=WORD,
        caps_dim=CAP,
        suffix_vocab_size=SUFFIXES,
        suffix_dim=SUFFIX,
        window_size=WINDOW,
        hidden=HIDDEN,
        dropout=DROPOUT,
        scoring=scoring,
    )
    model = window_tagger.make(cfg)
    params, state = model.init(jax.random.PRNGKey(0))
    optimizer = adam(1e-3)
    opt_state = optimizer.init(params)
    device_batch = {k: jnp.asarray(v) for k, v in batch.items()}
    fns = {}
    for grads in ("manual", "autodiff"):
        step = make_step(model, optimizer, grads)
        carry = [params, state, opt_state, jax.random.PRNGKey(1)]

        def run(step=step, carry=carry):
            carry[3], key = jax.random.split(carry[3])
            p, s, o, loss, _ = step(carry[0], carry[1], carry[2], device_batch, key)
            carry[:3] = [p, s, o]
            return loss

        fns[f"lecturenn_{grads}"] = run
    return fns


def torch_spec(scoring: str, num_sentences: int, length: int) -> dict:
    """The same network for torch_models.py's window_tagger (run in a child process)."""
    return {
        "builder": "window_tagger",
        "batches": 2,
        "batch": num_sentences,
        "vocab": VOCAB,
        "suffixes": SUFFIXES,
        "tags": TAGS,
        "word_dim": WORD,
        "caps_dim": CAP,
        "suffix_dim": SUFFIX,
        "hidden": HIDDEN,
        "dropout": DROPOUT,
        "input_dropout": 0.0,
        "scoring": scoring,
        "sentences": num_sentences,
        "length": length,
    }


def rounds(fns: dict, spec: dict, repeats: int, number: int) -> tuple[dict, dict]:
    """({name: seconds per step in each round}, PyTorch's last result): each lecturenn fn and
    PyTorch with 2 and with 1 threads, one sample each per round, interleaved round by round."""
    samples = {name: [] for name in (*fns, "pytorch_2_threads", "pytorch_1_threads")}
    for round_ in range(repeats):
        order = dict(in_round_order(fns, round_))
        for name, seconds in time_rounds(order, repeats=1, number=number).items():
            samples[name] += seconds
        for threads in (2, 1):
            result = torch_round(spec, threads, number)
            if result is None:
                raise SystemExit("bench_ner.py needs PyTorch: pip install torch==2.13.0")
            samples[f"pytorch_{threads}_threads"] += result["step"]
    return samples, result


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=10)
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. machine load)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    rows = []
    for scoring in ("softmax", "sll"):
        for num_sentences, length in ((16, 32), (64, 32)):
            batch = _batch(num_sentences, length)
            fns = lecturenn_steps(scoring, batch)
            before = os.getloadavg()
            samples, torch_result = rounds(
                fns, torch_spec(scoring, num_sentences, length), args.repeats, args.number
            )
            samples["pytorch"] = [
                min(two, one)
                for two, one in zip(
                    samples["pytorch_2_threads"], samples["pytorch_1_threads"], strict=True
                )
            ]
            seconds = {name: statistics.median(s) for name, s in samples.items()}
            tokens = num_sentences * length
            row = {
                "scoring": scoring,
                "sentences": num_sentences,
                "length": length,
                **{f"{name}_tokens_per_s": tokens / s for name, s in seconds.items()},
                **{f"{name}_ms_per_step": 1e3 * s for name, s in seconds.items()},
                "seconds_median_min_max": {name: spread(s) for name, s in samples.items()},
                "manual_over_autodiff_time": ratio_spread(
                    samples["lecturenn_manual"], samples["lecturenn_autodiff"]
                ),
            }
            over_pytorch = {
                name: ratio_spread(samples["pytorch"], samples[name])
                for name in ("lecturenn_manual", "lecturenn_autodiff")
            }
            for name, ratio in over_pytorch.items():
                row[f"{name}_over_pytorch"] = ratio[0]
            row["manual_over_pytorch_median_min_max"] = over_pytorch["lecturenn_manual"]
            row["load_average_1_5_15_min"] = {"before": before, "after": os.getloadavg()}
            rows.append(row)
            print(
                f"{scoring:7s} B{num_sentences}xL{length}: "
                + "  ".join(f"{n} {tokens / s:9.0f} tok/s" for n, s in seconds.items())
                + f"  manual/pytorch {row['lecturenn_manual_over_pytorch']:.2f}x"
                + f"  manual/autodiff time {row['manual_over_autodiff_time'][0]:.3f}"
            )
    path = write_json(
        "ner",
        {
            "benchmark": "window_tagger_training_step",
            "machine": {
                **machine(),
                "torch": torch_result["torch"],
                # as XLA CPU does (torch_models.py)
                "pytorch_flushes_subnormals_to_zero": torch_result["flush_denormal"],
            },
            "note": args.note,
            "load_average_at_start": load_at_start,
            "rounds": args.repeats,
            "goals": {"speedup_over_pytorch_min": 1.5, "manual_over_autodiff_time_max": 1.0},
            "min_manual_over_pytorch": min(r["lecturenn_manual_over_pytorch"] for r in rows),
            "max_manual_over_autodiff_time": max(r["manual_over_autodiff_time"][0] for r in rows),
            "rows": rows,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
