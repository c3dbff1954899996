"""Checkpoints: params, optimizer state, RNG key and data position, saved safely and atomically.

Layout under a run's checkpoint folder::

    step_00001200/arrays.npz      every pytree leaf, keyed by payload name + jax keystr path
    step_00001200/meta.json       user metadata (epoch, step, data position, config hash, ...)
                                  and, per leaf, dtype, shape and PRNG implementation
    step_00001200/manifest.json   sha256 and size of the two files above; written last
    latest                        name of the newest complete checkpoint; written last of all

No pickle: leaves are plain arrays (``np.load(..., allow_pickle=False)``), typed PRNG keys are
stored as their ``key_data`` and re-wrapped on load, and the tree structure comes from the
``like`` argument of ``load_checkpoint``, never from the file.

Atomicity: a checkpoint is assembled in ``step_XXXXXXXX.partial/`` (each file written to
``*.tmp``, fsynced, renamed), the folder is renamed into place, then ``latest`` is replaced the same
way, with the parent folder fsynced after each rename. A crash at any point leaves ``latest``
naming the previous complete checkpoint. Loading re-hashes every file against the manifest, so a
truncated or altered checkpoint is refused with the file named.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import keystr, tree_flatten_with_path, tree_unflatten

from lecturenn.errors import UserError
from lecturenn.io import fsync_dir

FORMAT = "lecturenn-checkpoint/1"
ARRAYS, META, MANIFEST, LATEST = "arrays.npz", "meta.json", "manifest.json", "latest"
_PARTIAL = ".partial"


def _write_atomic(path: Path, write) -> None:
    """``write(file)`` into ``path.tmp``, fsync, rename over ``path``."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _digest(path: Path) -> dict[str, Any]:
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return {"sha256": hasher.hexdigest(), "size": path.stat().st_size}


def _is_prng_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _storable(leaf: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The array written to the npz and the record that lets ``load`` rebuild the leaf exactly."""
    if _is_prng_key(leaf):
        data = np.asarray(jax.random.key_data(leaf))
        record = {
            "dtype": "key",
            "shape": list(leaf.shape),
            "prng_impl": str(jax.random.key_impl(leaf)),
        }
        return data, record
    array = np.asarray(leaf)
    if array.dtype == object:
        raise TypeError(f"checkpoint leaves must be arrays or numbers, got {type(leaf).__name__}")
    record = {"dtype": str(array.dtype), "shape": list(array.shape)}
    if array.dtype.kind == "V":
        # ml_dtypes (bfloat16, float8) have no npy descriptor: store their bits, dtype in meta.
        array = array.view(np.dtype(f"uint{8 * array.dtype.itemsize}"))
    return array, record


def _flatten(payload: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    arrays, records = {}, {}
    for name, tree in payload.items():
        for path, leaf in tree_flatten_with_path(tree)[0]:
            key = name + keystr(path)
            if key in ("file", "allow_pickle") or key in arrays:
                raise ValueError(f"checkpoint leaf key {key!r} is reserved or repeated")
            arrays[key], record = _storable(leaf)
            records[key] = {"payload": name, **record}
    return arrays, records


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def _complete_steps(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for child in directory.glob("step_*"):
        digits = child.name.removeprefix("step_")
        if digits.isdigit() and (child / MANIFEST).is_file():
            found.append((int(digits), child))
    return sorted(found)


def save_checkpoint(
    directory: str | Path, payload: dict[str, Any], meta: dict[str, Any], *, keep: int = 2
) -> Path:
    """Write ``payload`` (name -> pytree) and JSON ``meta`` (must hold an int ``step``).

    Returns the new ``step_XXXXXXXX`` folder; only the newest ``keep`` checkpoints are kept.
    """
    if "step" not in meta:
        raise ValueError("checkpoint meta must contain the integer 'step'")
    step = int(meta["step"])
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f"step_*{_PARTIAL}"):
        shutil.rmtree(stale)

    arrays, records = _flatten(payload)
    meta_bytes = json.dumps(
        {"format": FORMAT, "meta": meta, "leaves": records}, indent=1, sort_keys=True
    ).encode()
    final = directory / step_name(step)
    staging = directory / (final.name + _PARTIAL)
    staging.mkdir()
    try:
        _write_atomic(staging / ARRAYS, lambda out: np.savez(out, allow_pickle=False, **arrays))
        _write_atomic(staging / META, lambda out: out.write(meta_bytes))
        manifest = {
            "format": FORMAT,
            "step": step,
            "files": {name: _digest(staging / name) for name in (ARRAYS, META)},
        }
        manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
        _write_atomic(staging / MANIFEST, lambda out: out.write(manifest_bytes))
        fsync_dir(staging)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        fsync_dir(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _write_atomic(directory / LATEST, lambda out: out.write(final.name.encode() + b"\n"))
    fsync_dir(directory)

    steps = _complete_steps(directory)
    for _, old in steps[: max(len(steps) - keep, 0)]:
        if old != final:
            shutil.rmtree(old)
    return final


def complete_steps(directory: str | Path) -> list[int]:
    """The steps of the checkpoints in ``directory`` that hold a manifest, oldest first."""
    directory = Path(directory)
    return [step for step, _ in _complete_steps(directory)] if directory.is_dir() else []


def intact_steps(directory: str | Path) -> list[int]:
    """The steps whose checkpoint passes ``verify``, oldest first."""
    intact = []
    for step in complete_steps(directory):
        try:
            verify(Path(directory) / step_name(step))
        except UserError:
            continue
        intact.append(step)
    return intact


def point_latest(directory: str | Path, step: int) -> None:
    """Make the checkpoint of ``step`` the latest (resuming from an earlier one): later ones are
    removed, and ``latest`` names it."""
    directory = Path(directory)
    for later, folder in _complete_steps(directory):
        if later > step:
            shutil.rmtree(folder)
    _write_atomic(directory / LATEST, lambda out: out.write(step_name(step).encode() + b"\n"))
    fsync_dir(directory)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint named by ``latest``, else the highest complete ``step_*``, else None."""
    directory = Path(directory)
    pointer = directory / LATEST
    if pointer.is_file():
        target = directory / pointer.read_text().strip()
        if target.is_dir() and target.name.startswith("step_"):
            return target
    steps = _complete_steps(directory) if directory.is_dir() else []
    return steps[-1][1] if steps else None


def _resolve(path: Path) -> Path:
    if (path / MANIFEST).is_file():
        return path
    if path.is_dir() and (path.name.startswith("step_") or (path / ARRAYS).exists()):
        raise UserError(
            f"{path / MANIFEST} is missing: the checkpoint is incomplete (interrupted save?)"
        )
    found = latest_checkpoint(path) if path.is_dir() else None
    if found is None:
        raise UserError(f"no checkpoint found at {path}: pass a run's checkpoints/ folder")
    return found


def _verify(folder: Path) -> dict[str, Any]:
    """Check every file against the manifest; return the parsed meta.json."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{manifest_path} is missing: the checkpoint is incomplete")
    try:
        manifest = json.loads(manifest_path.read_bytes())
        files = manifest["files"]
        if manifest["format"] != FORMAT or set(files) != {ARRAYS, META}:
            raise ValueError(f"format {manifest['format']!r}, files {sorted(files)}")
        for entry in files.values():
            if not isinstance(entry["size"], int) or not isinstance(entry["sha256"], str):
                raise ValueError(f"entry {entry!r}")
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"{manifest_path} is corrupt or not a lecturenn manifest: {error!r}"
        ) from error
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path} is missing: the checkpoint is incomplete")
        got = _digest(path)
        if got["size"] != expected["size"]:
            raise UserError(
                f"{path} is truncated or corrupt: {got['size']} bytes, manifest says "
                f"{expected['size']}"
            )
        if got["sha256"] != expected["sha256"]:
            raise UserError(
                f"{path} is corrupt: sha256 {got['sha256']}, manifest says {expected['sha256']}"
            )
    try:
        meta = json.loads((folder / META).read_bytes())
        if not isinstance(meta, dict) or not isinstance(meta.get("leaves"), dict):
            raise ValueError("no 'leaves' table")
        if not isinstance(meta.get("meta"), dict):
            raise ValueError("no 'meta' table")
    except ValueError as error:
        raise UserError(f"{folder / META} is not a lecturenn checkpoint's meta: {error}") from None
    return meta


def verify(path_or_dir: str | Path) -> dict[str, Any]:
    """Check a checkpoint (a ``step_*`` folder, or the latest in a folder of them) against its
    manifest, manifest first; return its meta (the ``meta`` given to ``save_checkpoint``)."""
    return _verify(_resolve(Path(path_or_dir)))["meta"]


def _rebuild(key: str, stored: np.ndarray, record: dict, like_leaf: Any, source: Path) -> Any:
    if _is_prng_key(like_leaf):
        impl = str(jax.random.key_impl(like_leaf))
        if record.get("prng_impl") != impl or list(like_leaf.shape) != record["shape"]:
            raise UserError(
                f"{source}: leaf {key} is {record.get('prng_impl') or record['dtype']} key data of "
                f"shape {record['shape']}, expected a {impl} key of shape {list(like_leaf.shape)}"
            )
        return jax.random.wrap_key_data(jnp.asarray(stored), impl=impl)
    like_array = np.asarray(like_leaf)
    if record["dtype"] != str(like_array.dtype) or record["shape"] != list(like_array.shape):
        raise UserError(
            f"{source}: leaf {key} has dtype {record['dtype']} shape {tuple(record['shape'])}, "
            f"expected {like_array.dtype} {like_array.shape} (different model or config?)"
        )
    array = stored.view(like_array.dtype) if like_array.dtype.kind == "V" else stored
    if isinstance(like_leaf, jax.Array):
        return jnp.asarray(array)
    if isinstance(like_leaf, np.ndarray):
        return array
    if isinstance(like_leaf, np.generic):
        return array[()]
    return type(like_leaf)(array.item())


def load_checkpoint(
    path_or_dir: str | Path, like: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify and load a checkpoint into the structure of ``like`` (name -> pytree).

    ``path_or_dir`` is a ``step_*`` folder or the folder holding them (the latest is loaded).
    Payload names absent from ``like`` are not loaded. Returns ``(payload, meta)``.
    """
    folder = _resolve(Path(path_or_dir))
    stored_meta = _verify(folder)
    source = folder / ARRAYS
    try:
        payload = _read_payload(stored_meta["leaves"], source, like)
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise UserError(f"{source}: unreadable checkpoint arrays ({error!r})") from None
    return payload, stored_meta["meta"]


def _read_payload(records: dict, source: Path, like: dict[str, Any]) -> dict[str, Any]:
    payload = {}
    with np.load(source, allow_pickle=False) as npz:
        for name, tree in like.items():
            saved = {key for key, record in records.items() if record["payload"] == name}
            flat, treedef = tree_flatten_with_path(tree)
            if not saved and flat:
                names = sorted({record["payload"] for record in records.values()})
                raise UserError(f"{source} has no {name!r}: it holds {names}")
            wanted = {name + keystr(path) for path, _ in flat}
            if saved - wanted:
                raise UserError(
                    f"{source}: {name!r} has leaves the model lacks: {sorted(saved - wanted)[:5]}"
                )
            leaves = []
            for path, like_leaf in flat:
                key = name + keystr(path)
                if key not in records:
                    raise UserError(f"{source}: leaf {key} is missing (different model or config?)")
                leaves.append(_rebuild(key, npz[key], records[key], like_leaf, source))
            payload[name] = tree_unflatten(treedef, leaves)
    return payload


class Checkpointer:
    """Saves and restores a run's whole training state after each epoch: params, model state,
    optimizer state, the loop's RNG key, the best params so far and the history (a dataclass,
    stored in meta.json), so that a resumed run continues bit-identically."""

    def __init__(self, directory, keep: int = 2):
        self.directory, self.keep = Path(directory), keep

    def has_checkpoint(self) -> bool:
        return latest_checkpoint(self.directory) is not None

    def save(self, params, state, opt_state, key, best, history) -> Path:
        payload = {
            "params": params,
            "state": state,
            "opt_state": opt_state,
            "key": key,
            "best_params": best[0],
            "best_state": best[1],
        }
        meta = {"step": len(history.epochs), "history": dataclasses.asdict(history)}
        return save_checkpoint(self.directory, payload, meta, keep=self.keep)

    def restore(self, params, state, opt_state, key):
        """(params, state, opt_state, key, (best params, best state), history dict) of the
        latest checkpoint, read into the structures of the arguments."""
        like = {
            "params": params,
            "state": state,
            "opt_state": opt_state,
            "key": key,
            "best_params": params,
            "best_state": state,
        }
        payload, meta = load_checkpoint(self.directory, like)
        best = (payload["best_params"], payload["best_state"])
        return (
            payload["params"],
            payload["state"],
            payload["opt_state"],
            payload["key"],
            best,
            meta["history"],
        )
