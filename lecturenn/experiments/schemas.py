"""The keys each model kind and each data set accepts in a config, with their defaults.

``[model] kind = "mlp"`` is validated against ``MLPModel``, ``[data] name = "digits"`` against
``DigitsData``, and so on: an unknown key names the section's valid keys. Each class says which
task it serves (``TASK`` for models, ``TASKS`` for data sets) so that mismatched pairs (a language
model on digits) are refused before any work is done. Pure dataclasses: importing this module
costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lecturenn.errors import UserError

MODELS: dict[str, type] = {}
DATASETS: dict[str, type] = {}


def model(kind: str):
    def register(cls):
        MODELS[kind] = cls
        return cls

    return register


def dataset(name: str):
    def register(cls):
        DATASETS[name] = cls
        return cls

    return register


# --- models -------------------------------------------------------------------------------------


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


# --- data sets ----------------------------------------------------------------------------------


@dataset("digits")
@dataclass
class DigitsData:
    """scikit-learn's bundled 8×8 digits (1,797 images), split train/valid/test."""

    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = "digits"
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    preprocess: str = "standardize"


@dataset("spirals")
@dataclass
class SpiralsData:
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
    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = "xor"
    num_examples: int = 800
    noise: float = 0.25
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    preprocess: str = "none"


def task_of(cfg) -> str:
    return type(cfg.model).TASK


def check_compatible(cfg, source: str) -> None:
    task, tasks = task_of(cfg), type(cfg.data).TASKS
    if task not in tasks:
        raise UserError(
            f"{source}: model.kind {cfg.model.kind!r} is a {task} model but data.name "
            f"{cfg.data.name!r} serves {', '.join(tasks)}"
        )
