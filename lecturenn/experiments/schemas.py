"""The keys each model kind and each data set accepts in a config, with their defaults.

``[model] kind = "mlp"`` is validated against ``MLPModel``, ``[data] name = "digits"`` against
``DigitsData``, and so on: an unknown key names the section's valid keys. Each class says which
task it serves (``TASK`` for models, ``TASKS`` for data sets) so that mismatched pairs (a language
model on digits) are refused before any work is done. Pure dataclasses: importing this module
costs nothing.
"""

from __future__ import annotations

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


def load_all() -> None:
    """Import the task modules so that every model kind and data set is registered."""
    import lecturenn.experiments.tasks  # noqa: F401


def task_of(cfg) -> str:
    return type(cfg.model).TASK


def check_compatible(cfg, source: str) -> None:
    task, tasks = task_of(cfg), type(cfg.data).TASKS
    if task not in tasks:
        raise UserError(
            f"{source}: model.kind {cfg.model.kind!r} is a {task} model but data.name "
            f"{cfg.data.name!r} serves {', '.join(tasks)}"
        )
