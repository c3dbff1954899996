"""The CNN results page, docs/results/cnn.md: Fashion-MNIST and digits test accuracy next to the
Fashion-MNIST benchmark's small-CNN rows, per-class accuracy, the test confusion matrix, the
training time and the training-step benchmark (benchmarks/results/cnn.json).

    python scripts/reproduce_cnn_table.py          # read runs/cnn_* and write the page
    python scripts/reproduce_cnn_table.py --run    # first run what lacks a summary.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs"
PAGE = ROOT / "docs" / "results" / "cnn.md"
BENCH = ROOT / "benchmarks" / "results" / "cnn.json"
RUN_NAMES = ("cnn_fashion", "cnn_digits")

# github.com/zalandoresearch/fashion-mnist benchmark, its small-CNN rows
PUBLISHED = [
    ("2 conv + pooling", 91.6),
    ("2 conv, < 100k parameters", 92.5),
    ("2 conv + pooling + batch norm", 93.4),
    ("2 conv + 2 FC, random flips", 93.9),
]


# earlier settings of configs/cnn_fashion.toml, kept by the run folder they wrote
ATTEMPTS = [
    (
        "cnn_fashion_15ep_shift2",
        "dense 128, dropout 0.4, flips + ±2-pixel shifts, Adam 2e-3 halved every 4 epochs, "
        "15 epochs",
    ),
    (
        "cnn_fashion_32ep_d04",
        "dense 256, dropout 0.4, flips + ±1-pixel shifts, halved every 8 epochs, 32 epochs, "
        "54,000 training images, no test-time flip",
    ),
    (
        "cnn_fashion_36ep_flip_only",
        "dense 256, dropout 0.3, flips only, halved every 9 epochs, 36 epochs",
    ),
]


def mirror_ablation(name: str) -> tuple[float, float] | None:
    """Test accuracy of a run's final parameters scored plainly and with test-time flips (the
    mean of each image's and its mirror image's probabilities), from its last checkpoint; for a
    run without validation (cnn_fashion) these are the parameters its summary was tested with."""
    import jax

    from lecturenn.data.images import mirror_averaged
    from lecturenn.experiments import config as config_lib
    from lecturenn.experiments.tasks import classify
    from lecturenn.train import checkpoint, loop

    folder = RUNS / name
    if checkpoint.latest_checkpoint(folder / "checkpoints") is None:
        return None
    setup = classify.build(config_lib.load_config(folder / "config.toml"))
    model = setup.model
    # the last epoch's parameters: what a run without validation is tested with (checkpoints
    # written before the fix of loop.fit kept the initial ones as "best_params" for such runs)
    init_params, init_state = model.init(jax.random.PRNGKey(0))
    like = {"params": init_params, "state": init_state}
    payload, _ = checkpoint.load_checkpoint(folder / "checkpoints", like)
    params, state, test = payload["params"], payload["state"], setup.splits["test"]
    plain, mirrored = (
        loop.make_evaluate(scorer)(params, state, test)["accuracy"]
        for scorer in (model, model._replace(predict=mirror_averaged(model.predict)))
    )
    return plain, mirrored


def percent(summary: dict, key: str) -> str:
    """A summary's accuracy in percent, or "—" for a run without that split (no validation)."""
    return f"{100 * summary[key]:.2f}%" if key in summary else "—"


def command(name: str) -> str:
    return shlex.join(["lecturenn", "run", f"configs/{name}.toml", "--out", f"runs/{name}"])


def read_run(name: str) -> tuple[dict, list[dict]] | None:
    folder = RUNS / name
    if not (folder / "summary.json").exists():
        return None
    rows = (folder / "metrics.jsonl").read_text().splitlines()
    return json.loads((folder / "summary.json").read_text()), [json.loads(r) for r in rows]


def results_table() -> list[str]:
    lines = [
        "| run | test accuracy | val accuracy | best epoch / run | train time | command |",
        "|---|---|---|---|---|---|",
    ]
    for name in RUN_NAMES:
        found = read_run(name)
        if found is None:
            lines.append(f"| {name} | not run | | | | `{command(name)}` |")
            continue
        s, _ = found
        lines.append(
            f"| {name} | **{percent(s, 'test_accuracy')}** | {percent(s, 'val_accuracy')} "
            f"| {s['best_epoch']} / {s['epochs_run']} | {s['train_seconds'] / 60:.1f} min "
            f"| `{command(name)}` |"
        )
    return lines


def attempts_table() -> list[str]:
    lines = [
        "| run folder | settings | test | val | last-epoch train accuracy | train time |",
        "|---|---|---|---|---|---|",
    ]
    for folder, settings in ATTEMPTS:
        found = read_run(folder)
        if found is None:
            continue
        s, rows = found
        lines.append(
            f"| runs/{folder} | {settings} | {100 * s['test_accuracy']:.2f}% "
            f"| {percent(s, 'val_accuracy')} | {100 * rows[-1]['train_accuracy']:.1f}% "
            f"| {s['train_seconds'] / 60:.1f} min |"
        )
    return lines


def per_class_and_confusion() -> list[str]:
    folder = RUNS / "cnn_fashion"
    if not (folder / "confusion_test.json").exists():
        return ["Not run yet."]
    confusion = json.loads((folder / "confusion_test.json").read_text())
    counts, names = confusion["counts"], confusion["classes"]
    lines = ["| class | test accuracy | most often taken for |", "|---|---|---|"]
    for i, name in enumerate(names):
        row = counts[i]
        wrong = max((c, j) for j, c in enumerate(row) if j != i)
        confused = f"{names[wrong[1]]} ({wrong[0]} of {sum(row)})"
        lines.append(f"| {name} | {100 * row[i] / sum(row):.1f}% | {confused} |")
    image = PAGE.parent / "cnn_fashion_confusion.png"
    shutil.copyfile(folder / "plots" / "confusion_test.png", image)
    return [*lines, "", f"![test confusion matrix]({image.name})"]


def epochs_table() -> list[str]:
    found = read_run("cnn_fashion")
    if found is None:
        return []
    _, rows = found
    head = "| epoch | " + " | ".join(str(r["epoch"]) for r in rows) + " |"
    lines = [head, "|---" * (len(rows) + 1) + "|"]
    for key, label, scale in [
        ("val_accuracy", "val accuracy %", 100),
        ("train_accuracy", "train accuracy % (dropout, augmented)", 100),
        ("train_loss", "train loss", 1),
        ("seconds", "seconds", 1),
    ]:
        if key not in rows[0]:
            continue
        values = " | ".join(f"{scale * r[key]:.2f}" for r in rows)
        lines.append(f"| {label} | {values} |")
    return lines


def bench_lines() -> list[str]:
    if not BENCH.exists():
        return ["Not run yet: `python benchmarks/bench_cnn.py`."]
    b = json.loads(BENCH.read_text())
    if "step_images_per_second" not in b:
        return ["Written by an older bench_cnn.py: run `python benchmarks/bench_cnn.py` again."]
    load = b["machine"]["load_average_1_5_15min"]
    step, epoch = b["step_images_per_second"], b["epoch_images_per_second"]
    return [
        f"`python benchmarks/bench_cnn.py` (batch {b['batch_size']}, epochs of "
        f"{b['epoch_batches']} batches, load average {', '.join(f'{v:.1f}' for v in load)}; "
        "PyTorch timed in a child process after the JAX timings, 2 threads):",
        "",
        "| images / s | one step called from Python | one epoch as each trains |",
        "|---|---|---|",
        f"| lecturenn manual | {step['manual']:.0f} | {epoch['scan']:.0f} (lax.scan epoch), "
        f"{epoch['loop']:.0f} (Python loop of jitted steps) |",
        f"| lecturenn jax.grad | {step['autodiff']:.0f} | |",
        f"| PyTorch | {step['pytorch']:.0f} | {epoch['pytorch']:.0f} (Python loop) |",
        "",
        f"manual / jax.grad step time {b['manual_over_autodiff_time']:.2f}; lecturenn / PyTorch "
        f"images per second: {b['scan_epoch_over_pytorch_epoch_images_per_second']:.2f} for the "
        f"epoch (scan vs loop), {b['manual_step_over_pytorch_step_images_per_second']:.2f} for "
        "a single step.",
        "",
        "The goal (≥ 1.0× PyTorch) is met by the epoch, the way `lecturenn run` trains (every "
        "step of an epoch inside one compiled `lax.scan`), and missed by a single step called "
        "from Python: the same jitted step takes about 114 ms called alone but about 77 ms "
        "inside the scan (62 ms in the Fashion-MNIST run, dense 256 and Adam included). Where "
        "the 37 ms of the standalone call go has not been found (dispatch of a 20-leaf pytree "
        "is microseconds; candidates are XLA choosing other layouts or conv algorithms for the "
        "standalone program, and output buffers not donated). The first version of this "
        "benchmark timed only single steps, with PyTorch in the same process interleaved with "
        "XLA's calls (0.59× then, 68 ms a PyTorch step); this one starts "
        "PyTorch in a child process after the JAX timings, so neither thread pool spins "
        "beside the other.",
    ]


def verdict_lines() -> list[str]:
    found = read_run("cnn_fashion")
    if found is None:
        return []
    summary, _ = found
    lines = [
        f"The committed config reaches **{100 * summary['test_accuracy']:.2f}%** (target 93.5%, "
        "goal 94.0%). What changed from the 32-epoch row above, each for a reason that row "
        "shows: training accuracy on augmented, dropped-out batches (93.4%) was no higher than "
        "validation accuracy (93.6%), i.e. the net under-fitted, so dropout 0.4 → 0.3 and 36 "
        "epochs instead of 32; all 60,000 training images instead of 54,000 (no validation "
        "split: the published rows train on all of them, and the test set is read once, after "
        "the last epoch); and each test image scored with its mirror image, the flip the net "
        "was trained with (`data.test_time_flip`).",
    ]
    ablation = mirror_ablation("cnn_fashion")
    if ablation is not None:
        plain, mirrored = ablation
        lines += [
            "",
            f"The same final parameters score {100 * plain:.2f}% without the test-time flips and "
            f"{100 * mirrored:.2f}% with them (`mirror_ablation` in this script reads the run's "
            "checkpoint).",
        ]
    loaded = read_run("cnn_fashion_loaded")
    if loaded is not None:
        same = loaded[0]["test_accuracy"] == summary["test_accuracy"]
        lines += [
            "",
            "The same config trained once before while three other training jobs shared the two "
            f"cores (runs/cnn_fashion_loaded): test {100 * loaded[0]['test_accuracy']:.2f}% "
            f"({'bit-identical' if same else 'different'}), "
            f"{loaded[0]['train_seconds'] / 60:.1f} min of training; the time in the table "
            "above is the run with the cores to itself.",
        ]
    return lines


def write_page() -> None:
    published = [f"| {row} | {acc:.1f}% |" for row, acc in PUBLISHED]
    text = "\n".join(
        [
            "# CNN: Fashion-MNIST and digits",
            "",
            "Generated by `python scripts/reproduce_cnn_table.py` from `runs/cnn_*`. Every "
            'gradient of these runs is the hand-written backprop (`train.grads = "manual"`): '
            "conv as correlations of the output gradient with the input and the filters, "
            "max-pool routing δ to the recorded arg-max, batch norm's one-line backward. "
            "Machine: the 2-core CPU this project is developed on.",
            "",
            "## Test accuracy",
            "",
            *results_table(),
            "",
            "The Fashion-MNIST benchmark's small-CNN rows (the target is the best of them):",
            "",
            "| published (Fashion-MNIST benchmark) | test accuracy |",
            "|---|---|",
            *published,
            "",
            "## What moved it",
            "",
            "Three settings of `configs/cnn_fashion.toml`, in the order they were tried (training "
            "accuracy is measured on the augmented, dropped-out batches):",
            "",
            *attempts_table(),
            "",
            *verdict_lines(),
            "",
            "A bug found on the way: max-pool's backward used to re-test `x == max(x)` to find "
            "the arg-max. Compiled by XLA, the conv and batch-norm gradients came out wrong "
            "(relative error ≈ 1) while the eager gradient check passed, most likely because the "
            "pool's input was recomputed in another fusion with other rounding, so no input "
            "equalled the max. The forward now records the arg-max position; the CNN "
            "gradient tests run compiled (`gradcheck.assert_manual_matches_autodiff`) and fail "
            "on the old code. (Whether the Fashion-MNIST config itself was hit is not known: its "
            "first epoch reached the same 81–82% validation accuracy before and after the fix.)",
            "",
            "## Fashion-MNIST per epoch",
            "",
            *epochs_table(),
            "",
            "## Fashion-MNIST per class (test set)",
            "",
            *per_class_and_confusion(),
            "",
            "## Speed of the training step",
            "",
            *bench_lines(),
            "",
        ]
    )
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    tmp = PAGE.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(PAGE)
    print(f"wrote {PAGE.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run what lacks a summary.json first")
    args = parser.parse_args()
    if args.run:
        for name in RUN_NAMES:
            if not (RUNS / name / "summary.json").exists():
                print(f"$ {command(name)}", flush=True)
                subprocess.run(shlex.split(command(name)), cwd=ROOT, check=True)
    write_page()


if __name__ == "__main__":
    main()
