"""Classification task: MLP and CNN classifiers on digits, Fashion-MNIST, spirals, xor.

``build(cfg)`` prepares device data, the model (its config filled with the data's input shape and
number of classes) and the evaluation for the runner; the test confusion matrix is written when
the run ends.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import matplotlib
import numpy as np

from lecturenn.data import images, preprocess, synthetic
from lecturenn.data.registry import dataset_files
from lecturenn.experiments import plots, schemas
from lecturenn.experiments.tasks.base import Setup, input_noise, steps_of
from lecturenn.io import atomic_write_json
from lecturenn.models import cnn
from lecturenn.nn.init import output_bias_from_frequencies
from lecturenn.train import loop, metrics


def load_splits(cfg, seed: int) -> dict:
    """numpy splits {"train", "valid"?, "test"} of {"x", "y"}, preprocessed with train stats."""
    if cfg.name == "digits":
        split = images.load_digits_split(test_fraction=cfg.test_fraction, seed=seed)
    elif cfg.name == "fashion-mnist":
        split = images.load_fashion_mnist()
        for part, limit in (("train", cfg.limit_train), ("test", cfg.limit_eval)):
            if limit:
                split[f"x_{part}"], split[f"y_{part}"] = (
                    split[f"x_{part}"][:limit],
                    split[f"y_{part}"][:limit],
                )
    else:
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


def fill_model(model_cfg, input_shape, num_classes: int, class_counts=None):
    """The model config with the fields that come from the data filled in."""
    if isinstance(model_cfg, cnn.CNNConfig):
        return replace(model_cfg, input_shape=tuple(input_shape), num_classes=num_classes)
    bias = None
    if model_cfg.output_bias_from_frequencies and class_counts is not None:
        bias = tuple(float(b) for b in np.asarray(output_bias_from_frequencies(class_counts)))
    return replace(
        model_cfg,
        input_dim=int(np.prod(input_shape)),
        num_classes=num_classes,
        output_bias=bias,
    )


def build_model(model_cfg, input_shape, num_classes: int, class_counts=None):
    filled = fill_model(model_cfg, input_shape, num_classes, class_counts)
    return schemas.MODELS[schemas.kind_of(filled)].module.make(filled)


def class_names(dataset_name: str, num_classes: int) -> list[str]:
    if dataset_name == "fashion-mnist":
        return list(images.FASHION_MNIST_CLASSES)
    return [str(k) for k in range(num_classes)]


def build(cfg) -> Setup:
    data = load_splits(cfg.data, cfg.train.seed)
    train = loop.to_device(data["train"])
    valid = loop.to_device(data["valid"]) if "valid" in data else None
    test = loop.to_device(data["test"])
    num_classes = int(max(data["train"]["y"].max(), data["test"]["y"].max())) + 1
    counts = np.bincount(data["train"]["y"], minlength=num_classes)
    model_cfg = fill_model(cfg.model, train["x"].shape[1:], num_classes, counts)
    model = schemas.MODELS[schemas.kind_of(model_cfg)].module.make(model_cfg)
    scorer, plain = model, None
    if getattr(cfg.data, "test_time_flip", False):
        scorer = model._replace(predict=images.mirror_averaged(model.predict))
        plain = loop.make_predict(model)
    predict = loop.make_predict(scorer)
    names = class_names(cfg.data.name, num_classes)
    files = dataset_files("fashion-mnist") if cfg.data.name == "fashion-mnist" else []
    return Setup(
        model=model,
        model_config=model_cfg,
        train=train,
        valid=valid,
        evaluate=loop.make_evaluate(model, predict=predict),
        splits={"val": valid, "test": test},
        augment=_augmentation(cfg),
        finalize=_confusion_report(predict, test, names, plain),
        steps_per_epoch=steps_of(train["x"].shape[0], cfg.train.batch_size),
        vocabs={"classes": names},
        data_files=files,
    )


def _confusion_report(predict, test: dict, names: list[str], plain=None):
    """finalize: the test confusion matrix as confusion_test.json and plots/confusion_test.png,
    and the per-class test accuracies (the diagonal over the row sums) in the summary; with
    test-time flips (``plain`` the unflipped predictor), also the accuracy without them."""

    def finalize(params, state, out):
        extra = {}
        if plain is not None:
            plain_pred = np.argmax(np.asarray(plain(params, state, test["x"])), axis=-1)
            extra["test_accuracy_no_flip"] = float(np.mean(plain_pred == np.asarray(test["y"])))
        pred = np.argmax(np.asarray(predict(params, state, test["x"])), axis=-1)
        counts = np.asarray(metrics.confusion_matrix(pred, test["y"], len(names)))
        per_class = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
        atomic_write_json(
            out / "confusion_test.json",
            {"rows": "gold", "columns": "predicted", "classes": names, "counts": counts.tolist()},
        )
        (out / "plots").mkdir(exist_ok=True)
        _plot_confusion(counts, names, out / "plots" / "confusion_test.png")
        return {**extra, **{f"test_accuracy_class_{k}": float(v) for k, v in enumerate(per_class)}}

    return finalize


def _plot_confusion(counts, names: list[str], path) -> None:
    """Row-normalised confusion matrix (gold rows sum to 1) with the counts written in."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if len(names) <= 20:
        for i in ticks:
            for j in ticks:
                if counts[i, j]:
                    color = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=6, color=color
                    )
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"test confusion matrix (accuracy {accuracy:.2%})")
    plots.save_figure(fig, path)


def _augmentation(cfg):
    """Flips/translations of NHWC images (data.augment_*) and Gaussian input noise, composed."""
    flip = getattr(cfg.data, "augment_flip", False)
    shift = getattr(cfg.data, "augment_max_shift", 0)
    noise = input_noise(cfg.train.input_noise) if cfg.train.input_noise else None
    if not flip and not shift:
        return noise

    def augment(key, batch):
        image_key, noise_key = jax.random.split(key)
        batch = {**batch, "x": images.augment(image_key, batch["x"], flip, shift)}
        return noise(noise_key, batch) if noise is not None else batch

    return augment
