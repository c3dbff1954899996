"""Nonlinearities at the same budget: sigmoid, tanh, hardtanh, softsign, relu, leaky_relu on
digits and spirals -> docs/experiments/nonlinearities.md and nonlinearities.png.

    python scripts/lecture_nonlinearities.py [--epochs N] [--quick] [--set key=value ...]
"""

from __future__ import annotations

import sys

from lecture_common import (
    SPIRALS,
    Context,
    figure,
    fmt,
    main,
    markdown_table,
    plot_curves,
    save,
    write_doc,
)

ACTIVATIONS = ["sigmoid", "tanh", "hardtanh", "softsign", "relu", "leaky_relu"]
# data set -> (overrides, validation accuracy whose first epoch is reported)
DATASETS = {"digits": ([], 0.95), "spirals": (SPIRALS, 0.9)}


def nonlinearities(ctx: Context) -> None:
    activations = ACTIVATIONS[:2] if ctx.quick else ACTIVATIONS
    datasets = {"spirals": DATASETS["spirals"]} if ctx.quick else DATASETS
    results = {
        (data, act): ctx.run(
            "nonlinearities", f"{data}-{act}", [*overrides, f'model.activation="{act}"']
        )
        for data, (overrides, _) in datasets.items()
        for act in activations
    }

    def reached(data: str, act: str) -> int | None:
        """The first epoch whose validation accuracy reached the data set's level."""
        level = datasets[data][1]
        return next(
            (r["epoch"] for r in results[data, act].rows if r["val_accuracy"] >= level), None
        )

    header = ["activation"]
    for data, (_, level) in datasets.items():
        header += [f"{data} test acc", f"{data} final train loss", f"{data}: epochs to {level} val"]
    rows = [
        [act]
        + [
            cell
            for data in datasets
            for cell in (
                fmt(results[data, act].summary["test_accuracy"]),
                fmt(results[data, act].rows[-1]["train_loss"]),
                str(reached(data, act) or "–"),
            )
        ]
        for act in activations
    ]
    fig, axes = figure(2, len(datasets))
    for col, data in enumerate(datasets):
        curves = {act: results[data, act] for act in activations}
        plot_curves(axes[0, col], curves, "train_loss", f"{data}: training loss")
        axes[0, col].set_yscale("log")
        plot_curves(axes[1, col], curves, "val_accuracy", f"{data}: validation accuracy")
    save(fig, ctx.docs_dir / "nonlinearities.png")

    seen = []
    for data, (_, level) in datasets.items():
        ranked = sorted(activations, key=lambda a: -results[data, a].summary["test_accuracy"])
        never = [a for a in activations if reached(data, a) is None]
        seen.append(
            f"On {data}, by test accuracy: "
            + ", ".join(f"{a} {fmt(results[data, a].summary['test_accuracy'])}" for a in ranked)
            + (f"; {', '.join(never)} never reached {level} validation accuracy." if never else ".")
        )
    cfg = next(iter(results.values())).cfg
    sections = [
        f"The same network for every activation: {len(cfg.model.hidden)} hidden layers of "
        f"{cfg.model.hidden[0]} units, {cfg.model.init} init, {cfg.optim.name} "
        f"(lr {cfg.optim.learning_rate}), batch {cfg.train.batch_size}, {cfg.train.epochs} "
        f"epochs, seed {cfg.train.seed}. Test accuracy is that of the best-validation epoch; "
        "'epochs to x val' is the first epoch whose validation accuracy reached x. One seed: "
        "differences of a point or two of accuracy are within seed-to-seed noise.",
        markdown_table(header, rows),
        "**What the lecture predicts.** Sigmoid's slope is at most 1/4 and its output is not "
        "centred on zero, so a deep sigmoid net learns slowly; tanh (a rescaled sigmoid with "
        "slope 1 at 0) and its cheaper relatives hardtanh and softsign learn faster; ReLU does "
        "not saturate for positive inputs and passes gradients through unchanged, and leaky ReLU "
        "keeps a small slope where ReLU units would be dead.",
        "**What we saw.** " + " ".join(seen),
    ]
    write_doc(ctx, "nonlinearities", "Nonlinearities", sections, ["nonlinearities.png"])


if __name__ == "__main__":
    sys.exit(main({"nonlinearities": nonlinearities}))
