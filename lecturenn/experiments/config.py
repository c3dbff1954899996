"""Experiment configs: TOML files validated into typed dataclasses.

A config file only says what differs from the defaults (STYLE §4). ``extends = "base.toml"``
(relative to the file) merges a base file first; ``--set a.b=value`` overrides are parsed as TOML
values (``--set optim.learning_rate=0.01``, ``--set model.hidden=[128,64]``) and fall back to a
plain string. Every mistake — unknown key, wrong type, missing field, bad TOML — raises a
``UserError`` whose one line names the file, the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lecturenn.errors import UserError


@dataclass
class OptimConfig:
    name: str = "adam"
    learning_rate: float = 1e-3
    schedule: dict | None = None
    clip_global_norm: float | None = None
    clip_elementwise: float | None = None
    l1: float = 0.0
    l2: float = 0.0
    fan_in_scaling: bool = False
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    grads: str = "manual"
    driver: str = "scan"
    seed: int = 0
    patience: int | None = None
    monitor: str = "accuracy"
    halve_lr_on_plateau: bool = False
    input_noise: float = 0.0
    diagnostics: bool = False
    checkpoint: bool = True


@dataclass
class ParallelConfig:
    """Data parallelism (train/parallel.py): the batch is split over ``data`` devices, params
    replicated. ``distributed = true`` calls jax.distributed.initialize() first (multi-host:
    GPU clusters, TPU pod slices; coordinator and process ids come from the environment)."""

    data: int = 1
    distributed: bool = False


@dataclass
class Config:
    """A whole experiment. ``data`` and ``model`` are validated against the dataclass registered
    for ``data.name`` and ``model.kind`` (experiments/schemas.py), so each model and data set
    declares its own keys and defaults."""

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
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
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
        if isinstance(value, list):
            (item,) = typing.get_args(tp)
            return [_convert(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # training runs in float32: inf, nan and 1e39 would only surface as a NaN loss later
            if not abs(float(value)) <= FLOAT32_MAX:
                raise UserError(
                    f"{source}: key '{where}' must be a finite number within float32 range "
                    f"(|x| ≤ {FLOAT32_MAX:.4g}), got {value!r}"
                )
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise UserError(f"{source}: key '{where}' must be {_type_name(tp)}, got {value!r}")


def from_dict(cls, raw: dict, source: str = "<config>", prefix: str = ""):
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in hints:
            raise UserError(f"{source}: unknown key '{where}'; valid keys here: {', '.join(names)}")
        values[key] = _convert(value, hints[key], where, source)
    return cls(**values)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def read_toml(path: Path, _seen: tuple = ()) -> dict:
    """Read a TOML file, following ``extends`` (relative to the file), detecting cycles."""
    path = Path(path)
    if path.resolve() in _seen:
        raise UserError(f"{path}: 'extends' makes a cycle through {path.name}")
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
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
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {text!r}: '{k}' is not a table")
        node[keys[-1]] = value
    return raw


def _validate_section(raw: dict, section: str, selector: str, registry: dict, source: str):
    table = raw.get(section, {})
    if not isinstance(table, dict):
        raise UserError(f"{source}: '{section}' must be a table")
    choice = table.get(selector)
    if choice is None:
        raise UserError(
            f"{source}: missing key '{section}.{selector}'; expected one of "
            f"{', '.join(sorted(registry))}"
        )
    if choice not in registry:
        raise UserError(
            f"{source}: key '{section}.{selector}' is {choice!r}; expected one of "
            f"{', '.join(sorted(registry))}"
        )
    return from_dict(registry[choice], table, source, section)


def load_config(path, overrides: list[str] = ()) -> Config:
    """TOML file (+ extends, + --set overrides) -> validated Config."""
    from lecturenn.experiments import schemas

    schemas.load_all()
    source = str(path)
    raw = apply_overrides(read_toml(Path(path)), list(overrides))
    model = _validate_section(raw, "model", "kind", schemas.MODELS, source)
    data = _validate_section(raw, "data", "name", schemas.DATASETS, source)
    cfg = from_dict(Config, {k: v for k, v in raw.items() if k not in ("model", "data")}, source)
    cfg.model, cfg.data = model, data
    schemas.check_compatible(cfg, source)
    return cfg


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


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
