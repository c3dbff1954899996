"""The CNN results page, docs/results/cnn.md: Fashion-MNIST and digits test accuracy next to the
Fashion-MNIST benchmark's small-CNN rows, with and without test-time flips, per class, the test
confusion matrix, the epochs of a run and the training-step benchmark.

    python scripts/reproduce_cnn_table.py            # the page from the committed records
    python scripts/reproduce_cnn_table.py --check    # ... and compare with docs/results/cnn.md
    python scripts/reproduce_cnn_table.py --run      # first train what has no record

Runs: configs/cnn_fashion_3conv.toml, configs/cnn_fashion.toml and configs/cnn_digits.toml with
seeds 0, 1, 2 into
runs/cnn/<config>_s<seed>/; records in docs/results/records/cnn/.
"""

from __future__ import annotations

import json
import sys

from results_common import (
    ROOT,
    benchmark_cpu,
    load_at_end,
    machine_of,
    main,
    mean_sd,
    minutes,
    notes,
    record,
    seed_records,
    seeded,
)

PAGE = ROOT / "docs" / "results" / "cnn.md"
IMAGE = PAGE.parent / "cnn_fashion_confusion.png"
BENCH = ROOT / "benchmarks" / "results" / "models.json"
SEEDS = (0, 1, 2)
FASHION = ("cnn_fashion_3conv", "cnn_fashion")  # the first: the per-epoch and per-class tables
CONFIGS = (*FASHION, "cnn_digits")
RUNS = [run for config in CONFIGS for run in seeded("cnn", config, config, SEEDS)]

# github.com/zalandoresearch/fashion-mnist, the benchmark table's small-CNN rows
PUBLISHED = [
    ("2 conv + pooling", 91.6),
    ("2 conv, < 100k parameters", 92.5),
    ("2 conv + pooling + batch norm", 93.4),
    ("2 conv + 2 FC, random flips", 93.9),
]


def records_of(config: str) -> list[tuple[int, dict]]:
    return seed_records("cnn", config, SEEDS)


def pct(values: list[float]) -> str:
    return mean_sd([100 * v for v in values])


def train_time(seconds: list[float]) -> str:
    if max(seconds) < 60:
        return f"{mean_sd(seconds, 0)} s"
    return f"{mean_sd([t / 60 for t in seconds], 1)} min"


def results_table() -> list[str]:
    lines = [
        "| config | seeds | test accuracy | without test-time flips | train time | epochs |",
        "|---|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        found = records_of(config)
        if not found:
            lines.append(f"| {config} | not run | | | | |")
            continue
        s = [rec["summary"] for _, rec in found]
        no_flip = [r["test_accuracy_no_flip"] for r in s if "test_accuracy_no_flip" in r]
        lines.append(
            f"| {config} | {', '.join(str(seed) for seed, _ in found)} "
            f"| **{pct([r['test_accuracy'] for r in s])}** "
            f"| {pct(no_flip) if no_flip else '(no flips)'} "
            f"| {train_time([r['train_seconds'] for r in s])} | {s[0]['epochs_run']} |"
        )
    return lines


def per_run_table() -> list[str]:
    lines = [
        "| run | test | without flips | train time | load at end (1 / 15 min) | command |",
        "|---|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        for seed, rec in records_of(config):
            s = rec["summary"]
            no_flip = s.get("test_accuracy_no_flip")
            lines.append(
                f"| {config} s{seed} | {100 * s['test_accuracy']:.2f}% "
                f"| {f'{100 * no_flip:.2f}%' if no_flip is not None else '—'} "
                f"| {minutes(s['train_seconds'])} | {load_at_end(rec)} | `{rec['command']}` |"
            )
        lines += [f"| {r.name} | not run | | | | `{r.command()}` |" for r in unrecorded(config)]
    return lines


def unrecorded(config: str) -> list:
    return [run for run in seeded("cnn", config, config, SEEDS) if record(run) is None]


def verdict() -> list[str]:
    best_published = max(acc for _, acc in PUBLISHED)
    lines = []
    for config in FASHION:
        found = records_of(config)
        if not found:
            continue
        accs = [100 * rec["summary"]["test_accuracy"] for _, rec in found]
        mean = sum(accs) / len(accs)
        word = "above" if mean > best_published else "**not above**"
        lines += [
            f"Mean test accuracy of `configs/{config}.toml` over {len(accs)} seeds: "
            f"**{mean:.2f}%**, {word} the best small-CNN row of the benchmark table "
            f"({best_published:.1f}%).",
            "",
        ]
    return lines[:-1]


def first_fashion() -> tuple[str, int, dict] | None:
    """(config, seed, record) of the first recorded run of the first Fashion config that has one."""
    for config in FASHION:
        found = records_of(config)
        if found:
            return (config, *found[0])
    return None


def epochs_table() -> list[str]:
    first = first_fashion()
    if first is None:
        return []
    config, seed, rec = first
    rows = rec["metrics"]
    lines = [
        f"`{config}` seed {seed}, per epoch (training figures on augmented, dropped-out batches):",
        "",
        "| epoch | train loss | train accuracy % | learning rate | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lr = f"{r['lr']:.2e}" if "lr" in r else "—"
        lines.append(
            f"| {r['epoch']} | {r['train_loss']:.4f} | {100 * r['train_accuracy']:.2f} | {lr} "
            f"| {r['seconds']:.1f} |"
        )
    return lines


def confusion(write_image: bool) -> list[str]:
    first = first_fashion()
    if first is None or "confusion_test.json" not in first[2].get("files", {}):
        return ["Not run yet."]
    config, seed, rec = first
    matrix = rec["files"]["confusion_test.json"]
    counts, names = matrix["counts"], matrix["classes"]
    lines = [
        f"`{config}` seed {seed}, test set, with test-time flips:",
        "",
        "| class | test accuracy | most often taken for |",
        "|---|---|---|",
    ]
    for i, name in enumerate(names):
        row = counts[i]
        wrong, j = max((c, j) for j, c in enumerate(row) if j != i)
        lines.append(
            f"| {name} | {100 * row[i] / sum(row):.1f}% | {names[j]} ({wrong} of {sum(row)}) |"
        )
    if write_image:
        import numpy as np

        from lecturenn.experiments.tasks.classify import _plot_confusion

        _plot_confusion(np.asarray(counts), names, IMAGE)
    return [*lines, "", f"![test confusion matrix]({IMAGE.name})"]


def bench_lines() -> list[str]:
    """The CNN's row of benchmarks/results/models.json (``python benchmarks/bench_models.py``)."""
    bench = json.loads(BENCH.read_text()) if BENCH.exists() else {}
    models, machine = bench.get("models", {}), bench.get("machine", {})
    if "cnn_fashion" not in models:
        return ["Not measured yet: `python benchmarks/bench_models.py --only cnn_fashion`."]
    row = models["cnn_fashion"]
    ms = {k: 1e3 * v[0] for k, v in row["seconds_median_min_max"].items()}
    load = row["load_average_1_5_15_min"]["after"]
    lines = [
        f"`python benchmarks/bench_models.py` (the net of `{row['config']}`, batch "
        f"{row['items_per_step']}, epochs of "
        f"{row['epoch_batches']} random batches, {len(row['manual_over_autodiff_time'])} "
        f"interleaved rounds, medians; {benchmark_cpu(machine)}, load average "
        f"{', '.join(f'{v:.1f}' for v in load)} after; docs/performance.md has the figures of "
        "another 2-core machine):",
        "",
        "| ms a step | one step called from Python | inside one epoch as each trains |",
        "|---|---|---|",
        f"| lecturenn, hand-written backprop | {ms['manual']:.1f} | "
        f"{ms['epoch'] / row['epoch_batches']:.1f} (one `lax.scan` an epoch) |",
        f"| lecturenn, `jax.grad` | {ms['autodiff']:.1f} | |",
    ]
    if "torch_step" in ms:
        lines += [
            f"| PyTorch {row['torch']} | {ms['torch_step']:.1f} | "
            f"{ms['torch_epoch'] / row['epoch_batches']:.1f} (a Python loop) |",
            "",
            f"Speed over PyTorch: {row['epoch_speedup_over_pytorch'][0]:.2f}× for the epoch, "
            f"{row['step_speedup_over_pytorch'][0]:.2f}× for a single step; hand-written / "
            f"`jax.grad` time {row['manual_over_autodiff_time'][0]:.2f}. Why a step called "
            "alone costs more than one inside the epoch: `docs/performance.md`.",
        ]
    return lines


def build(write_image: bool = True) -> str:
    records = [rec for config in CONFIGS for _, rec in records_of(config)]
    published = [f"| {row} | {acc:.1f}% |" for row, acc in PUBLISHED]
    text = [
        "# CNN: Fashion-MNIST and digits",
        "",
        "Generated by `python scripts/reproduce_cnn_table.py` from the run records in "
        "`docs/results/records/cnn/` (`--run` trains what has none). Every gradient of these "
        'runs is the hand-written backprop (`train.grads = "manual"`): conv as correlations of '
        "the output gradient with the input and the filters, max-pool routing δ to the recorded "
        "arg-max, batch norm's one-line backward. The test set is read once, after the last "
        "epoch; with `data.test_time_flip` each test image is scored with its mirror image (the "
        "flip the net is trained with), and the accuracy without is recorded beside it. Train "
        "time is the sum of the epochs' seconds; the load average when each run finished says "
        f"whether it had the machine to itself. Machine: {machine_of(records) or '—'}.",
        "",
        "## Test accuracy (mean ± sd over the seeds listed)",
        "",
        *results_table(),
        "",
        *verdict(),
        "",
        "The Fashion-MNIST benchmark's small-CNN rows:",
        "",
        "| published (Fashion-MNIST benchmark) | test accuracy |",
        "|---|---|",
        *published,
        "",
        "## Every run, with its command",
        "",
        *per_run_table(),
        "",
        "## Fashion-MNIST per epoch",
        "",
        *epochs_table(),
        "",
        "## Fashion-MNIST per class",
        "",
        *confusion(write_image),
        "",
        "## Speed of the training step",
        "",
        *bench_lines(),
        "",
        *notes("cnn"),
        "",
    ]
    return "\n".join(text)


if __name__ == "__main__":
    main(__doc__, RUNS, PAGE, lambda: build(write_image="--check" not in sys.argv))
