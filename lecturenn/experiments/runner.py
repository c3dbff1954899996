"""``lecturenn run CONFIG``: config → data → model → optimizer → training → run folder.

The run folder holds ``config.toml`` (the resolved config), ``metrics.jsonl`` (one line per
epoch), ``summary.json`` (final figures under flat names such as ``test_accuracy``) and
``plots/``. Reads top to bottom like nanoGPT's train.py (STYLE §4).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from lecturenn.data import preprocess
from lecturenn.experiments import config as config_lib
from lecturenn.io import append_line, atomic_write_json, atomic_write_text
from lecturenn.models import mlp
from lecturenn.optim.build import build_optimizer
from lecturenn.train import loop


def load_data(cfg, seed: int) -> dict:
    """Splits as numpy arrays: {"train", "valid", "test"} each {"x", "y"}."""
    if cfg.name == "digits":
        from lecturenn.data.images import load_digits_split

        split = load_digits_split(test_fraction=cfg.test_fraction, seed=seed)
    else:
        from lecturenn.data import synthetic

        whole = (
            synthetic.spirals(cfg.num_per_class, cfg.num_classes, cfg.noise, seed)
            if cfg.name == "spirals"
            else synthetic.xor(cfg.num_examples, cfg.noise, seed)
        )
        num_test = int(round(cfg.test_fraction * len(whole["x"])))
        split = {
            "x_train": whole["x"][num_test:],
            "y_train": whole["y"][num_test:],
            "x_test": whole["x"][:num_test],
            "y_test": whole["y"][:num_test],
        }
    x_train, y_train = split["x_train"], split["y_train"]
    num_valid = int(round(cfg.val_fraction * len(x_train)))
    order = np.random.default_rng(seed).permutation(len(x_train))
    valid_idx, train_idx = order[:num_valid], order[num_valid:]
    x_tr, x_va, x_te = preprocess.fit_apply(
        cfg.preprocess, x_train[train_idx], x_train[valid_idx], split["x_test"]
    )
    data = {
        "train": {"x": x_tr, "y": y_train[train_idx]},
        "test": {"x": x_te, "y": split["y_test"]},
    }
    if num_valid:
        data["valid"] = {"x": x_va, "y": y_train[valid_idx]}
    return data


def build_model(cfg, input_dim: int, num_classes: int):
    return mlp.make(
        mlp.MLPConfig(
            input_dim=input_dim,
            num_classes=num_classes,
            hidden=tuple(cfg.hidden),
            activation=cfg.activation if isinstance(cfg.activation, str) else tuple(cfg.activation),
            dropout=cfg.dropout,
            batchnorm=cfg.batchnorm,
            init=cfg.init,
        )
    )


def make_optimizer(cfg: config_lib.OptimConfig):
    return build_optimizer(
        cfg.name,
        cfg.learning_rate,
        schedule=cfg.schedule,
        clip_global_norm=cfg.clip_global_norm,
        clip_elementwise=cfg.clip_elementwise,
        l1=cfg.l1,
        l2=cfg.l2,
        **cfg.options,
    )


def run(cfg: config_lib.Config, out: Path, *, quiet: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", config_lib.dumps_toml(config_lib.to_dict(cfg)))
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")

    data = load_data(cfg.data, cfg.train.seed)
    train = loop.to_device(data["train"])
    valid = loop.to_device(data["valid"]) if "valid" in data else None
    test = loop.to_device(data["test"])
    input_dim = int(np.prod(train["x"].shape[1:]))
    num_classes = int(max(data["train"]["y"].max(), data["test"]["y"].max())) + 1
    model = build_model(cfg.model, input_dim, num_classes)
    optimizer = make_optimizer(cfg.optim)

    def on_epoch(row):
        append_line(metrics_path, json.dumps(row, sort_keys=True))
        if not quiet:
            shown = "  ".join(
                f"{k}={v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds")
            )
            print(f"epoch {row['epoch']:3d}  {shown}  ({row['seconds']:.2f}s)", file=sys.stderr)

    start = time.perf_counter()
    params, state, history = loop.fit(
        model,
        optimizer,
        train,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        key=jax.random.PRNGKey(cfg.train.seed),
        grads=cfg.train.grads,
        driver=cfg.train.driver,
        valid=valid,
        monitor=cfg.train.monitor,
        patience=cfg.train.patience,
        on_epoch=on_epoch,
    )
    train_seconds = time.perf_counter() - start

    evaluate = loop.make_evaluate(model)
    summary = {
        "name": cfg.name,
        "epochs_run": len(history.epochs),
        "best_epoch": history.best_epoch,
        "train_seconds": round(train_seconds, 3),
    }
    for split_name, split in (("test", test), ("val", valid)):
        if split is not None:
            for k, v in evaluate(params, state, split).items():
                summary[f"{split_name}_{k}"] = v
    atomic_write_json(out / "summary.json", summary)
    _plot(history.epochs, out / "plots")
    return summary


def _plot(rows: list[dict], folder: Path) -> None:
    """Loss and metric curves per epoch, one PNG each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(exist_ok=True)
    epochs = [r["epoch"] for r in rows]
    for metric in ("loss", "accuracy"):
        keys = [k for k in rows[0] if k.endswith(metric)] if rows else []
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k in keys:
            ax.plot(epochs, [r[k] for r in rows], label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        fig.tight_layout()
        tmp = folder / f"{metric}.tmp.png"
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(folder / f"{metric}.png")
