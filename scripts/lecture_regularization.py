"""Regularization on a task that overfits: none, L2, dropout, early stopping, input noise, batch
norm; train/validation gap and test accuracy -> docs/experiments/regularization.md and
regularization.png.

    python scripts/lecture_regularization.py [--epochs N] [--quick] [--set key=value ...]
"""

from __future__ import annotations

import sys

from lecture_common import (
    Context,
    Result,
    figure,
    fmt,
    main,
    markdown_table,
    num_train,
    plot_curves,
    save,
    write_doc,
)

REGULARIZERS = {
    "none": [],
    "L2": ["optim.l2=1e-2"],
    "dropout": ["model.dropout=0.5"],
    "early stopping": ["train.patience=10"],
    "input noise": ["train.input_noise=0.5"],
    "batch norm": ["model.batchnorm=true"],
}


def accuracies(result: Result, best: bool) -> dict[str, float]:
    """Train / val / test accuracy (eval mode) of the last epoch's parameters, or of the best
    validation epoch's, read back from the run's checkpoint."""
    import jax

    from lecturenn.experiments.tasks import classify
    from lecturenn.train import checkpoint

    setup = classify.build(result.cfg)
    params, state = setup.model.init(jax.random.PRNGKey(0))
    like = {"params": params, "state": state, "best_params": params, "best_state": state}
    payload, _ = checkpoint.load_checkpoint(result.folder / "checkpoints", like)
    prefix = "best_" if best else ""
    params, state = payload[prefix + "params"], payload[prefix + "state"]
    splits = {"train": setup.train, "val": setup.valid, "test": setup.splits["test"]}
    return {k: setup.evaluate(params, state, v)["accuracy"] for k, v in splits.items()}


def regularization(ctx: Context) -> None:
    variants = {k: REGULARIZERS[k] for k in ("none", "dropout")} if ctx.quick else REGULARIZERS
    results = {
        name: ctx.run("regularization", name.replace(" ", "-"), overrides)
        for name, overrides in variants.items()
    }
    measured = {name: accuracies(r, best=name == "early stopping") for name, r in results.items()}
    rows = [
        [
            name,
            " ".join(variants[name]) or "–",
            str(r.summary["epochs_run"]),
            fmt(m["train"]),
            fmt(m["val"]),
            fmt(m["train"] - m["val"]),
            fmt(m["test"]),
        ]
        for (name, r), m in zip(results.items(), measured.values(), strict=True)
    ]
    fig, axes = figure(1, 2)
    plot_curves(axes[0, 0], results, "val_loss", "validation loss")
    plot_curves(axes[0, 1], results, "val_accuracy", "validation accuracy")
    save(fig, ctx.docs_dir / "regularization.png")

    cfg = results["none"].cfg
    none = measured["none"]
    smaller = [
        n
        for n in measured
        if n != "none"
        and measured[n]["train"] - measured[n]["val"] < none["train"] - none["val"] - 0.005
    ]
    better = [n for n in measured if n != "none" and measured[n]["test"] > none["test"] + 0.005]
    stopped = ""
    if "early stopping" in results:
        summary = results["early stopping"].summary
        stopped = (
            f" Early stopping ended the run after {summary['epochs_run']} of "
            f"{cfg.train.epochs} epochs and kept epoch {summary['best_epoch']}."
        )
    sections = [
        f"A {'-'.join(str(h) for h in cfg.model.hidden)} {cfg.model.activation} MLP "
        f"({cfg.model.init} init) on {num_train(cfg)} {cfg.data.name} training examples "
        f"(data.test_fraction = "
        f"{cfg.data.test_fraction}, data.val_fraction = {cfg.data.val_fraction}), "
        f"{cfg.optim.name} lr {cfg.optim.learning_rate}, batch {cfg.train.batch_size}, up to "
        f"{cfg.train.epochs} epochs, seed {cfg.train.seed}. Accuracies are measured in eval "
        "mode (no dropout, no noise, batch-norm running statistics) on the last epoch's "
        "parameters — except for early stopping, which keeps the best-validation epoch's "
        "(the runner's summary always reports that epoch, so the others are read from the "
        "run's last checkpoint). gap = train acc − val acc. L2 adds λW to the weights' "
        "gradient (biases are not penalized). One seed: a difference of a few validation "
        "images is noise.",
        markdown_table(
            ["regularizer", "overrides", "epochs run", "train acc", "val acc", "gap", "test acc"],
            rows,
        ),
        "**What the lecture predicts.** A big network on few examples fits the training set "
        "(train accuracy → 1) while validation accuracy stalls: the gap is overfitting. L2 "
        "shrinks the weights, dropout trains an ensemble of thinned networks, input noise "
        "smooths the function around each example, early stopping keeps the epoch where "
        "validation stopped improving, and batch norm mainly speeds up training with a mild "
        "regularizing noise from batch statistics; each should narrow the gap or raise "
        "held-out accuracy.",
        f"**What we saw.** Without regularization: train {fmt(none['train'])}, val "
        f"{fmt(none['val'])}, test {fmt(none['test'])}. A gap smaller by more than 0.005: "
        f"{', '.join(smaller) or 'none'}; test accuracy higher by more than 0.005: "
        f"{', '.join(better) or 'none'}.{stopped}",
    ]
    write_doc(ctx, "regularization", "Regularization", sections, ["regularization.png"])


if __name__ == "__main__":
    sys.exit(main({"regularization": regularization}))
