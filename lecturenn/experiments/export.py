"""``lecturenn export RUN``: a trained run's best parameters in a format other frameworks read.

Every leaf of the params pytree becomes one array named by its path with dots ("embed",
"layers.0.Wx", "out.b"); the arrays keep lecturenn's layouts (row-vector convention: a dense
weight is (inputs, outputs), an LSTM's gate blocks are i, f, g, o; docs/getting-started.md shows
how they map onto PyTorch's). The file's metadata holds the resolved config (TOML) and the sizes
that came from the data (model.json), so the file alone says what the arrays are.

- ``safetensors`` (the ``export`` extra): read by PyTorch, JAX, NumPy and most frameworks.
- ``npz``: NumPy's zip of arrays, no extra needed (``np.load(path, allow_pickle=False)``);
  the metadata is stored as two text arrays, ``__config__`` and ``__model__``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from jax.tree_util import DictKey, GetAttrKey, SequenceKey

from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments.inference import data_fields_json, load_run
from lecturenn.io import atomic_write_bytes

FORMATS = ("safetensors", "npz")


def _name(path) -> str:
    parts = []
    for key in path:
        if isinstance(key, DictKey):
            parts.append(str(key.key))
        elif isinstance(key, SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, GetAttrKey):
            parts.append(key.name)
        else:
            parts.append(str(key))
    return ".".join(parts)


def flat_arrays(params) -> dict[str, np.ndarray]:
    """{"layers.0.Wx": array, ...}: each leaf of ``params`` under its dotted path."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {_name(path): np.ascontiguousarray(np.asarray(leaf)) for path, leaf in leaves}


def export_run(run_dir, fmt: str = "safetensors", out=None) -> Path:
    """Write the run's best parameters (and their metadata) to ``out`` (default: the run folder's
    ``model.safetensors`` / ``model.npz``); return the path."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / f"model.{fmt}"
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: no folder {out.parent}")
    arrays = flat_arrays(run.params)
    metadata = {
        "format": "lecturenn",
        "config": config_lib.dumps_toml(config_lib.to_dict(run.config)),
        "model": json.dumps(data_fields_json(run.model_config)),
    }
    if fmt == "safetensors":
        try:
            from safetensors.numpy import save
        except ImportError:
            raise UserError(
                'safetensors is not installed: pip install -e ".[export]", or use --format npz'
            ) from None
        data = save(arrays, metadata=metadata)
    else:
        import io

        buffer = io.BytesIO()
        np.savez(
            buffer,
            allow_pickle=False,
            __config__=np.asarray(metadata["config"]),
            __model__=np.asarray(metadata["model"]),
            **arrays,
        )
        data = buffer.getvalue()
    return atomic_write_bytes(out, data)
