"""Experiment configs: TOML files validated into typed dataclasses.

A config file only says what differs from the defaults. ``extends = "base.toml"``
(relative to the file) merges a base file first; ``--set a.b=value`` overrides are parsed as TOML
values (``--set optim.learning_rate=0.01``, ``--set model.hidden=[128,64]``) and fall back to a
plain string. Every mistake — unknown key, wrong type, missing field, bad TOML — raises a
``UserError`` whose one line names the file, the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lecturenn.errors import UserError
from lecturenn.models.base import setting

GRAD_SOURCES = ("manual", "autodiff")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Source:
    """Where a config's values come from, for error messages: the file, except for the keys a
    ``--set key=value`` override gave, which are blamed on that override."""

    def __init__(self, path: str, overrides: dict[str, str] | None = None):
        self.path, self.overrides = path, dict(overrides or {})

    def __str__(self) -> str:
        return self.path

    def __call__(self, where: str = "") -> str:
        key = re.sub(r"\[\d+\]", "", where)
        for overridden, text in self.overrides.items():
            if key == overridden or key.startswith(overridden + "."):
                return f"--set {text!r}"
        return self.path


def _blame(source, where: str) -> str:
    return source(where) if callable(source) else str(source)


DRIVERS = ("scan", "loop")


@dataclass
class OptimConfig:
    name: str = setting(
        "adam", 'ours: sgd momentum nesterov adagrad rmsprop adadelta adam; "optax:NAME"'
    )
    learning_rate: float = setting(1e-3, "initial learning rate (a schedule starts here)")
    schedule: dict | None = setting(
        None,
        'e.g. {kind = "step_decay", step_size = 500, factor = 0.5}; a length may be given '
        "in epochs instead: decay_epochs, step_size_epochs, warmup_epochs",
    )
    clip_global_norm: float | None = setting(
        None, "rescale the gradient to this global norm at most"
    )
    clip_elementwise: float | None = setting(None, "clip each gradient entry to ±this")
    l1: float = setting(0.0, "L1 strength on the weights (not biases)")
    l2: float = setting(0.0, "L2 strength on the weights (not biases)")
    fan_in_scaling: bool = setting(False, "divide each layer's rate by its fan-in (Collobert)")
    embedding_lr_scale: float = setting(
        1.0, "multiply the lookup tables' (word vectors') steps by this, e.g. 0.1 for pretrained"
    )
    average_decay: float = setting(
        0.0,
        "evaluate and keep a moving average of the parameters, this decay per step "
        "(e.g. 0.999; 0: the parameters as trained)",
    )
    options: dict = setting({}, "the optimizer's own settings, e.g. {b1 = 0.9, b2 = 0.999}")


@dataclass
class TrainConfig:
    epochs: int = setting(20, "passes over the training data")
    batch_size: int = setting(32, "examples (sentences, streams) per step")
    grads: str = setting("manual", "manual (hand-written backprop) or autodiff (jax.grad)")
    driver: str = setting("scan", "scan (an epoch is one lax.scan) or loop (Python loop of steps)")
    seed: int = setting(0, "initialization, shuffling and dropout")
    patience: int | None = setting(None, "stop after this many epochs without validation gain")
    monitor: str = setting("accuracy", "validation metric that picks the best epoch")
    halve_lr_on_plateau: bool = setting(False, "halve the rate after each epoch without gain")
    input_noise: float = setting(0.0, "std of Gaussian noise added to the inputs while training")
    diagnostics: bool = setting(False, "log gradient norms and activation saturation per epoch")
    checkpoint: bool = setting(True, "save a resumable checkpoint after every epoch")
    tensorboard: bool = setting(
        False, "TensorBoard event files in RUN/tensorboard (the tensorboard extra)"
    )

    def check(self, source) -> None:
        def fail(key, what):
            raise UserError(f"{_blame(source, 'train.' + key)}: key {'train.' + key!r} {what}")

        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                fail(key, f"must be >= 1, got {getattr(self, key)}")
        if self.patience is not None and self.patience < 1:
            fail("patience", f"must be >= 1, got {self.patience}")
        if self.input_noise < 0:
            fail("input_noise", f"must be >= 0, got {self.input_noise}")
        for key, choices in (("grads", GRAD_SOURCES), ("driver", DRIVERS)):
            if getattr(self, key) not in choices:
                fail(key, f"must be one of {', '.join(choices)}, got {getattr(self, key)!r}")


@dataclass
class ParallelConfig:
    """Data parallelism (train/parallel.py): the batch is split over ``data`` devices, params
    replicated. ``distributed = true`` calls jax.distributed.initialize() first (multi-host:
    GPU clusters, TPU pod slices; coordinator and process ids come from the environment)."""

    data: int = setting(1, "devices the batch is split over (params replicated)")
    distributed: bool = setting(False, "join a multi-process run (jax.distributed) first")

    def check(self, source) -> None:
        if self.data < 1:
            where = _blame(source, "parallel.data")
            raise UserError(f"{where}: key 'parallel.data' must be >= 1, got {self.data}")


@dataclass
class Config:
    """A whole experiment. ``model`` is an instance of the model's own config dataclass
    (models/*.py), ``data`` of the data set's (experiments/schemas.py), selected by
    ``model.kind`` and ``data.name``: each setting is declared once, where it is used."""

    name: str = "experiment"
    data: Any = None
    model: Any = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)


def _type_name(tp) -> str:
    if tp is type(None):
        return "nothing"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        item = _type_name(typing.get_args(tp)[0])
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings"}
        return f"a list of {plural.get(item, item)}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true/false",
        dict: "a table",
    }.get(tp, str(tp))


FLOAT32_MAX = 3.4028234663852886e38


def _convert(value: Any, tp, where: str, source: str):
    """Check value against the type hint tp; return it converted (int → float where due)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, where, source)
            except UserError:
                continue
    elif tp is type(None):
        # TOML has no null: an optional field is switched off with the string "none".
        if value is None or value == "none":
            return None
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return from_dict(tp, value, source, where)
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp)
            return [_convert(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
    elif origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(
                    _convert(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)
                )
            if len(value) == len(args):
                return tuple(
                    _convert(v, a, f"{where}[{i}]", source)
                    for i, (v, a) in enumerate(zip(value, args, strict=True))
                )
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # training runs in float32: inf, nan and 1e39 would only surface as a NaN loss later
            if not abs(float(value)) <= FLOAT32_MAX:
                raise UserError(
                    f"{_blame(source, where)}: key {where!r} must be a finite number within "
                    f"float32 range (|x| ≤ {FLOAT32_MAX:.4g}), got {value!r}"
                )
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise UserError(
        f"{_blame(source, where)}: key {where!r} must be {_type_name(tp)}, got {value!r}"
    )


def from_dict(cls, raw: dict, source: str = "<config>", prefix: str = ""):
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys by name, and keys that
    the task fills from the data."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = [name for name, f in fields.items() if not f.metadata.get("data")]
    values = {}
    for key, value in raw.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise UserError(
                f"{_blame(source, where)}: unknown key {where!r}; valid keys here: "
                f"{', '.join(names)}"
            )
        if fields[key].metadata.get("data"):
            raise UserError(
                f"{_blame(source, where)}: key {where!r} is filled from the data set, not set in "
                "a config; remove it"
            )
        values[key] = _convert(value, hints[key], where, source)
    return cls(**values)


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, table by table. A table that names another ``kind`` than the
    base's (a schedule, a model) replaces it whole: one kind's options mean nothing to another."""
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(value, dict) and isinstance(below, dict) and not _other_kind(below, value):
            out[key] = _merge(below, value)
        else:
            out[key] = value
    return out


def _other_kind(below: dict, value: dict) -> bool:
    return "kind" in below and "kind" in value and below["kind"] != value["kind"]


def read_toml(path: Path, _seen: tuple = ()) -> dict:
    """Read a TOML file, following ``extends`` (relative to the file), detecting cycles."""
    path = Path(path)
    if path.resolve() in _seen:
        raise UserError(f"{path}: 'extends' makes a cycle through {path.name}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a config file") from None
    except PermissionError:
        raise UserError(f"{path}: cannot read the config file (permission denied)") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: invalid TOML: {err}") from None
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise UserError(f"{path}: key 'extends' must be a file name string, got {base!r}")
    return _merge(read_toml(path.parent / base, (*_seen, path.resolve())), raw)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=value' -> (['a', 'b'], value parsed as a TOML value, else the raw string)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key=value, e.g. --set optim.learning_rate=0.01")
    key, _, value_text = text.partition("=")
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = _merge({}, raw)
    for text in overrides:
        keys, value = parse_override(text)
        if not all(keys):
            raise UserError(f"--set {text!r}: empty key; expected e.g. --set train.epochs=5")
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {text!r}: '{k}' is not a table")
        node[keys[-1]] = value
    return raw


def _override_keys(overrides: list[str]) -> dict[str, str]:
    return {".".join(parse_override(text)[0]): text for text in overrides}


def _section(raw: dict, section: str, selector: str, registry: dict, source):
    """(the registry entry chosen by ``section.selector``, the rest of the table)."""
    table = raw.get(section, {})
    if not isinstance(table, dict):
        raise UserError(f"{_blame(source, section)}: '{section}' must be a table")
    choice = table.get(selector)
    where = _blame(source, f"{section}.{selector}")
    if choice is None:
        raise UserError(
            f"{where}: missing key '{section}.{selector}'; expected one of "
            f"{', '.join(sorted(registry))}"
        )
    if not isinstance(choice, str) or choice not in registry:
        raise UserError(
            f"{where}: key '{section}.{selector}' is {choice!r}; expected one of "
            f"{', '.join(sorted(registry))}"
        )
    return registry[choice], table


def load_config(path, overrides: list[str] = ()) -> Config:
    """TOML file (+ extends, + --set overrides) -> validated Config."""
    return load_config_dict(read_toml(Path(path)), overrides, source=str(path))


def load_config_dict(raw: dict, overrides: list[str] = (), *, source: str = "<config>") -> Config:
    """A config's tables (as read from TOML, + --set overrides) -> validated Config."""
    from lecturenn.experiments import schemas

    raw = apply_overrides(raw, list(overrides))
    source = Source(str(source), _override_keys(list(overrides)))
    kind, table = _section(raw, "model", "kind", schemas.MODELS, source)
    model = from_dict(kind.config, {k: v for k, v in table.items() if k != "kind"}, source, "model")
    data_cls, table = _section(raw, "data", "name", schemas.DATASETS, source)
    data = from_dict(data_cls, table, source, "data")
    cfg = from_dict(Config, {k: v for k, v in raw.items() if k not in ("model", "data")}, source)
    if not NAME.fullmatch(cfg.name) or ".." in cfg.name:
        raise UserError(
            f"{source('name')}: key 'name' must be a plain name (letters, digits, '.', '_', '-'; "
            f"no folders), got {cfg.name!r}: runs go to runs/NAME unless --out says otherwise"
        )
    cfg.model, cfg.data = model, data
    cfg.train.check(source)
    cfg.parallel.check(source)
    _check_model(model, source)
    schemas.check_compatible(cfg, source)
    return cfg


def _check_model(model, source) -> None:
    """The model's own range checks, with the config file (or the --set override) named."""
    try:
        model.check()
    except UserError as error:
        key = re.match(r"model\.(\w+)", str(error))
        raise UserError(f"{_blame(source, key.group(0) if key else 'model')}: {error}") from None


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def section_dict(obj) -> dict:
    """The keys a user may set in a section (data-filled fields left out), TOML-ready values."""
    return {
        f.name: _plain(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if not f.metadata.get("data")
    }


def to_dict(config: Config) -> dict:
    """The resolved config as nested dicts: what config.toml of a run folder holds."""
    from lecturenn.experiments import schemas

    out = {"name": config.name}
    out["data"] = section_dict(config.data)
    out["model"] = {"kind": schemas.kind_of(config.model), **section_dict(config.model)}
    for name in ("optim", "train", "parallel"):
        out[name] = section_dict(getattr(config, name))
    return out


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def dumps_toml(data: dict) -> str:
    """Write a resolved config as TOML: top-level scalars, then one [table] per section.

    Tables inside a section (``optim.schedule``) are written inline; ``None`` is written as the
    string "none", which the loader reads back as None.
    """

    def line(key, value):
        return f"{key} = {_toml_value('none' if value is None else value)}"

    scalars = [line(k, v) for k, v in data.items() if not isinstance(v, dict)]
    tables = [
        f"[{k}]\n" + "".join(line(kk, vv) + "\n" for kk, vv in v.items())
        for k, v in data.items()
        if isinstance(v, dict)
    ]
    return "\n".join(["\n".join(scalars) + "\n", *tables])
