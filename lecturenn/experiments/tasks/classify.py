"""Classification task: MLP and CNN classifiers on digits, Fashion-MNIST, spirals, xor.

Registers the config schemas of its models and data sets; ``build(cfg)`` prepares device data, the
model and the evaluation for the runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lecturenn.experiments.schemas import dataset, model


@model("mlp")
@dataclass
class MLPModel:
    TASK: ClassVar[str] = "classify"
    kind: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [64])
    activation: str | list[str] = "relu"
    dropout: float = 0.0
    batchnorm: bool = False
    init: str = "glorot_uniform"
    init_options: dict = field(default_factory=dict)
    output_bias_from_frequencies: bool = False


@model("cnn")
@dataclass
class CNNModel:
    TASK: ClassVar[str] = "classify"
    kind: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [32, 64])
    kernel: int = 3
    dense: int = 128
    dropout: float = 0.0
    batchnorm: bool = False
    init: str = "he_normal"


@dataset("fashion-mnist")
@dataclass
class FashionMNISTData:
    """Zalando's Fashion-MNIST (60k/10k 28×28 grey images) from $LECTURENN_DATA/fashion-mnist/."""

    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = "fashion-mnist"
    val_fraction: float = 0.1
    preprocess: str = "none"
    augment_flip: bool = False
    augment_max_shift: int = 0
    # evaluate on each image and its mirror image, averaging the class probabilities
    test_time_flip: bool = False


@dataset("digits")
@dataclass
class DigitsData:
    """scikit-learn's bundled 8×8 digits (1,797 images), split train/valid/test."""

    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = "digits"
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    preprocess: str = "standardize"
    augment_flip: bool = False
    augment_max_shift: int = 0
    test_time_flip: bool = False


@dataset("spirals")
@dataclass
class SpiralsData:
    """CS231n's interleaved spirals."""

    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = "spirals"
    num_per_class: int = 300
    num_classes: int = 3
    noise: float = 0.2
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    preprocess: str = "none"


@dataset("xor")
@dataclass
class XorData:
    """6.036's XOR clouds."""

    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = "xor"
    num_examples: int = 800
    noise: float = 0.25
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    preprocess: str = "none"


def load_splits(cfg, seed: int) -> dict:
    """numpy splits {"train", "valid"?, "test"} of {"x", "y"}, preprocessed with train stats."""
    import numpy as np

    from lecturenn.data import preprocess, synthetic

    if cfg.name == "digits":
        from lecturenn.data.images import load_digits_split

        split = load_digits_split(test_fraction=cfg.test_fraction, seed=seed)
    elif cfg.name == "fashion-mnist":
        from lecturenn.data.images import load_fashion_mnist

        split = load_fashion_mnist()
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


def build_model(cfg, input_dim: int, num_classes: int, class_counts=None, input_shape=None):
    import numpy as np

    from lecturenn.models import cnn, mlp
    from lecturenn.nn.init import output_bias_from_frequencies

    if cfg.kind == "cnn":
        return cnn.make(
            cnn.CNNConfig(
                input_shape=tuple(input_shape),
                num_classes=num_classes,
                channels=tuple(cfg.channels),
                kernel=cfg.kernel,
                dense=cfg.dense,
                dropout=cfg.dropout,
                batchnorm=cfg.batchnorm,
                init=cfg.init,
            )
        )
    bias = None
    if cfg.output_bias_from_frequencies and class_counts is not None:
        bias = tuple(float(b) for b in np.asarray(output_bias_from_frequencies(class_counts)))
    return mlp.make(
        mlp.MLPConfig(
            input_dim=input_dim,
            num_classes=num_classes,
            hidden=tuple(cfg.hidden),
            activation=cfg.activation if isinstance(cfg.activation, str) else tuple(cfg.activation),
            dropout=cfg.dropout,
            batchnorm=cfg.batchnorm,
            init=cfg.init,
            init_options=dict(cfg.init_options),
            output_bias=bias,
        )
    )


def build(cfg):
    import numpy as np

    from lecturenn.experiments.runner import Setup
    from lecturenn.train import loop

    data = load_splits(cfg.data, cfg.train.seed)
    train = loop.to_device(data["train"])
    valid = loop.to_device(data["valid"]) if "valid" in data else None
    test = loop.to_device(data["test"])
    num_classes = int(max(data["train"]["y"].max(), data["test"]["y"].max())) + 1
    counts = np.bincount(data["train"]["y"], minlength=num_classes)
    input_shape = train["x"].shape[1:]
    model_ = build_model(cfg.model, int(np.prod(input_shape)), num_classes, counts, input_shape)
    scorer = model_
    if getattr(cfg.data, "test_time_flip", False):
        from lecturenn.data.images import mirror_averaged

        scorer = model_._replace(predict=mirror_averaged(model_.predict))
    predict = loop.make_predict(scorer)
    evaluate = loop.make_evaluate(model_, predict=predict)
    return Setup(
        model=model_,
        train=train,
        valid=valid,
        evaluate=evaluate,
        splits={"val": valid, "test": test},
        augment=_augmentation(cfg),
        finalize=_confusion_report(predict, test, _class_names(cfg.data.name, num_classes)),
    )


def _class_names(dataset_name: str, num_classes: int) -> list[str]:
    from lecturenn.data import images

    if dataset_name == "fashion-mnist":
        return list(images.FASHION_MNIST_CLASSES)
    return [str(k) for k in range(num_classes)]


def _confusion_report(predict, test: dict, names: list[str]):
    """finalize: the test confusion matrix as confusion_test.json and plots/confusion_test.png,
    and the per-class test accuracies (the diagonal over the row sums) in the summary."""
    import numpy as np

    from lecturenn.io import atomic_write_json
    from lecturenn.train import metrics

    def finalize(params, state, out):
        pred = np.argmax(np.asarray(predict(params, state, test["x"])), axis=-1)
        counts = np.asarray(metrics.confusion_matrix(pred, test["y"], len(names)))
        per_class = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
        atomic_write_json(
            out / "confusion_test.json",
            {"rows": "gold", "columns": "predicted", "classes": names, "counts": counts.tolist()},
        )
        (out / "plots").mkdir(exist_ok=True)
        _plot_confusion(counts, names, out / "plots" / "confusion_test.png")
        return {f"test_accuracy_class_{k}": float(v) for k, v in enumerate(per_class)}

    return finalize


def _plot_confusion(counts, names: list[str], path) -> None:
    """Row-normalised confusion matrix (gold rows sum to 1) with the counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lecturenn.experiments.runner import save_figure

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
    save_figure(fig, path)


def _augmentation(cfg):
    """Flips/translations of NHWC images (data.augment_*) and Gaussian input noise, composed."""
    import jax

    from lecturenn.data import images
    from lecturenn.experiments.runner import input_noise

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
