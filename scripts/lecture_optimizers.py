"""Optimizers and schedules: our sgd, momentum, nesterov, adagrad, rmsprop, adadelta, adam next to
optax's (the same curves up to float rounding), and step / exponential / inverse-time schedules
for SGD -> docs/experiments/optimizers.md and optimizers.png.

    python scripts/lecture_optimizers.py [--epochs N] [--quick] [--set key=value ...]
"""

from __future__ import annotations

import json
import sys

from lecture_common import (
    SPIRALS,
    Context,
    Result,
    figure,
    fmt,
    main,
    markdown_table,
    num_train,
    plot_curves,
    save,
    sci,
    write_doc,
)

# optimizer -> learning rate (the usual defaults); ours and optax's run with the same settings
OPTIMIZERS = {
    "sgd": 0.1,
    "momentum": 0.02,
    "nesterov": 0.02,
    "adagrad": 0.05,
    "rmsprop": 1e-3,
    "adadelta": 1.0,
    "adam": 1e-3,
}
# SGD schedules on spirals from a rate at which constant SGD keeps bouncing: 40 epochs of
# 20 steps = 800 updates
SCHEDULE_RUN = [*SPIRALS, 'optim.name="sgd"', "optim.learning_rate=1.0", "train.epochs=40"]
SCHEDULES = {
    "constant": None,
    "step decay": {"kind": "step_decay", "step_size": 200, "factor": 0.5},
    "exponential": {"kind": "exponential", "k": 0.003},
    "inverse time": {"kind": "inverse_time", "tau": 100},
}


def toml_inline(table: dict) -> str:
    return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + "}"


def max_gap(a: Result, b: Result, key: str) -> float:
    return max(abs(x[key] - y[key]) for x, y in zip(a.rows, b.rows, strict=True))


def compare_with_optax(ctx: Context, ax) -> tuple[list[str], str]:
    """Our optimizers and optax's from the same start on the same batches."""
    names = list(OPTIMIZERS)[:1] if ctx.quick else list(OPTIMIZERS)
    ours, theirs = {}, {}
    for name in names:
        lr = f"optim.learning_rate={OPTIMIZERS[name]}"
        ours[name] = ctx.run("optimizers", name, [f'optim.name="{name}"', lr])
        theirs[name] = ctx.run("optimizers", f"optax-{name}", [f'optim.name="optax:{name}"', lr])
    rows = [
        [
            name,
            str(OPTIMIZERS[name]),
            fmt(ours[name].summary["test_accuracy"]),
            fmt(theirs[name].summary["test_accuracy"]),
            fmt(ours[name].rows[-1]["train_loss"], 4),
            sci(max_gap(ours[name], theirs[name], "train_loss")),
            sci(max_gap(ours[name], theirs[name], "val_loss")),
        ]
        for name in names
    ]
    for n, name in enumerate(names):
        for result, style, label in ((ours[name], "-", name), (theirs[name], ":", None)):
            epochs = [r["epoch"] for r in result.rows]
            losses = [r["train_loss"] for r in result.rows]
            ax.semilogy(epochs, losses, style, color=f"C{n}", label=label)
    ax.set_title(f"{ours[names[0]].cfg.data.name}: ours (solid), optax's (dotted)", fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("train_loss")
    ax.legend(fontsize=7)

    cfg = ours[names[0]].cfg
    worst = max(
        max_gap(ours[n], theirs[n], key) for n in names for key in ("train_loss", "val_loss")
    )
    sections = [
        f"A {'-'.join(str(h) for h in cfg.model.hidden)} {cfg.model.activation} MLP on "
        f"{cfg.data.name}, batch {cfg.train.batch_size}, {cfg.train.epochs} epochs, seed "
        f"{cfg.train.seed}; every run starts from the same parameters and sees the same batches. "
        "'ours' is lecturenn.optim.transforms, 'optax' is optax's optimizer with the same "
        "hyper-parameters (their defaults agree). The two |Δ| columns are the largest absolute "
        "difference between the two runs' per-epoch mean training loss and validation loss.",
        markdown_table(
            [
                "optimizer",
                "lr",
                "test acc (ours)",
                "test acc (optax)",
                "final train loss (ours)",
                "max |Δ train loss|",
                "max |Δ val loss|",
            ],
            rows,
        ),
    ]
    seen = (
        "The largest |difference| between our and optax's loss curves, over all optimizers and "
        f"epochs, was {sci(worst)}: float32 rounding (ε ≈ 1.2e-7) from a different order of "
        "the same operations, not a different algorithm."
    )
    return sections, seen


def lr_at(spec: dict | None, lr: float, step: int) -> float:
    from lecturenn.optim.schedules import get_schedule

    if spec is None:
        return lr
    options = {k: v for k, v in spec.items() if k != "kind"}
    return float(get_schedule(spec["kind"], init_value=lr, **options)(step))


def schedules(ctx: Context, ax) -> tuple[list[str], str]:
    """SGD with a constant rate against step, exponential and inverse-time decay."""
    results = {
        label: ctx.run(
            "optimizers",
            f"sgd-{label.replace(' ', '-')}",
            SCHEDULE_RUN + ([f"optim.schedule={toml_inline(spec)}"] if spec else []),
        )
        for label, spec in SCHEDULES.items()
    }
    cfg = results["constant"].cfg
    lr = cfg.optim.learning_rate
    steps = cfg.train.epochs * (num_train(cfg) // cfg.train.batch_size)
    rows = [
        [
            label,
            ", ".join(f"{k} = {v}" for k, v in (spec or {}).items() if k != "kind") or "–",
            sci(lr_at(spec, lr, steps - 1)),
            fmt(r.summary["test_accuracy"]),
            fmt(r.rows[-1]["train_loss"], 4),
            fmt(r.rows[-1]["val_loss"], 4),
        ]
        for (label, spec), r in zip(SCHEDULES.items(), results.values(), strict=True)
    ]
    plot_curves(ax, results, "train_loss", f"{cfg.data.name}: SGD from lr {lr}, schedules")
    ax.set_yscale("log")
    sections = [
        f"Schedules for SGD on {cfg.data.name} (same MLP, batch {cfg.train.batch_size}, "
        f"{cfg.train.epochs} epochs = {steps} updates) from α0 = {lr}, a rate at which constant "
        "SGD keeps bouncing (t counts updates): step decay α0·factor^⌊t/step_size⌋, exponential "
        "α0·e^(−kt), inverse time α0·τ/max(t, τ).",
        markdown_table(
            [
                "schedule",
                "settings",
                "lr at the last step",
                "test acc",
                "final train loss",
                "final val loss",
            ],
            rows,
        ),
    ]
    final = {label: r.rows[-1]["train_loss"] for label, r in results.items()}
    lower = [s for s in final if s != "constant" and final[s] < final["constant"]]
    seen = (
        f"With the constant rate the last epoch's training loss was {fmt(final['constant'], 4)}; "
        f"{', '.join(lower) or 'no schedule'} ended lower "
        f"({', '.join(fmt(final[s], 4) for s in lower) or '–'})."
    )
    return sections, seen


def optimizers(ctx: Context) -> None:
    fig, axes = figure(1, 1 if ctx.quick else 2)
    sections, seen = compare_with_optax(ctx, axes[0, 0])
    if not ctx.quick:
        more_sections, more_seen = schedules(ctx, axes[0, 1])
        sections, seen = sections + more_sections, seen + " " + more_seen
    save(fig, ctx.docs_dir / "optimizers.png")
    sections += [
        "**What the lecture predicts.** The hand-written updates implement the same equations "
        "as optax, so from the same start on the same batches the curves coincide up to float "
        "rounding. Momentum and Nesterov speed SGD up along directions the gradients agree on; "
        "AdaGrad's steps shrink as squared gradients accumulate; RMSProp, AdaDelta and Adam "
        "scale each parameter's step by running averages. A decaying rate lets SGD take large "
        "steps early and settle into a minimum later instead of bouncing around it.",
        "**What we saw.** " + seen,
    ]
    title = "Optimizers and learning-rate schedules"
    write_doc(ctx, "optimizers", title, sections, ["optimizers.png"])


if __name__ == "__main__":
    sys.exit(main({"optimizers": optimizers}))
