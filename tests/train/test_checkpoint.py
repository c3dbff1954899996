"""Checkpoints: bit-exact round trips, refusal of damaged files, crash safety, pruning."""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.errors import UserError
from lecturenn.train import checkpoint
from lecturenn.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


def _payload(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    params = {
        "layers": (
            {
                "W": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                "b": jnp.asarray(rng.normal(size=4)),
            },
            {"W": jnp.asarray(rng.normal(size=(4, 2)), jnp.float64)},
        ),
        "embed": jnp.asarray(rng.normal(size=(5, 3)), jnp.bfloat16),
    }
    # Values whose bits a lossy format would change: NaN payloads, -0.0, subnormals, extremes.
    special = np.array([np.nan, -0.0, 1e-45, np.finfo(np.float32).max, -np.inf], np.float32)
    special.view(np.uint32)[0] = 0x7FC00123
    optimizer_state = optax.adam(1e-3).init(params)
    return {
        "params": params,
        "opt_state": optimizer_state,
        "rng": {
            "key": jax.random.key(seed),
            "rbg_keys": jax.random.split(jax.random.key(seed, impl="rbg"), 3),
            "legacy": jax.random.PRNGKey(seed),
        },
        "data": {
            "position": np.int64(seed * 1000 + 7),
            "order": rng.permutation(10).astype(np.uint32),
            "special": special,
            "counts": np.arange(6, dtype=np.int32).reshape(2, 3),
            "flags": np.array([True, False]),
            "epoch": seed,
            "lr": 0.5 * seed,
        },
    }


def _assert_bit_identical(got, want) -> None:
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(got)[0], jax.tree_util.tree_leaves(want), strict=True
    ):
        assert type(a) is type(b) or (isinstance(a, jax.Array) and isinstance(b, jax.Array)), path
        if isinstance(b, jax.Array) and jnp.issubdtype(b.dtype, jax.dtypes.prng_key):
            assert a.dtype == b.dtype, path
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.tobytes() == b.tobytes(), path


META = {"step": 100, "epoch": 2, "data_position": 640, "config_hash": "abc123"}


def test_round_trip_is_bit_identical(tmp_path):
    payload = _payload(3)
    folder = save_checkpoint(tmp_path, payload, META)
    assert folder == tmp_path / "step_00000100"
    assert latest_checkpoint(tmp_path) == folder
    for source in (tmp_path, folder):
        loaded, meta = load_checkpoint(source, like=_payload(0))
        _assert_bit_identical(loaded, payload)
        assert meta == META
    key = loaded["rng"]["key"]
    assert (jax.random.normal(key, (4,)) == jax.random.normal(payload["rng"]["key"], (4,))).all()
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        assert "params['layers'][0]['W']" in npz.files


def test_loading_a_subset_of_the_payload(tmp_path):
    payload = _payload(1)
    save_checkpoint(tmp_path, payload, META)
    loaded, _ = load_checkpoint(tmp_path, like={"params": _payload(0)["params"]})
    assert set(loaded) == {"params"}
    _assert_bit_identical(loaded["params"], payload["params"])


def _saved(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path, _payload(1), META)


def test_truncated_arrays_file_is_refused_by_name(tmp_path):
    folder = _saved(tmp_path)
    arrays = folder / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:-100])
    with pytest.raises(UserError, match=r"arrays\.npz is truncated"):
        load_checkpoint(tmp_path, like=_payload(0))


@pytest.mark.parametrize("name", ["arrays.npz", "meta.json"])
def test_one_flipped_byte_is_refused_by_name(tmp_path, name):
    folder = _saved(tmp_path)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x04
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(UserError) as error:
        load_checkpoint(folder, like=_payload(0))
    assert str(folder / name) in str(error.value) and "corrupt" in str(error.value)


def test_missing_or_garbled_manifest_is_refused(tmp_path):
    folder = _saved(tmp_path)
    manifest = folder / "manifest.json"
    manifest.write_text("{not json")
    with pytest.raises(UserError, match=r"manifest\.json is corrupt"):
        load_checkpoint(folder, like=_payload(0))
    manifest.unlink()
    for source in (folder, tmp_path):
        with pytest.raises(UserError, match=r"manifest\.json is missing"):
            load_checkpoint(source, like=_payload(0))
    with pytest.raises(UserError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "elsewhere", like=_payload(0))


def test_structure_mismatch_names_the_leaf(tmp_path):
    _saved(tmp_path)
    like = _payload(0)
    like["params"]["layers"][0]["W"] = jnp.zeros((4, 3), jnp.float32)
    with pytest.raises(UserError, match=r"params\['layers'\]\[0\]\['W'\].*\(4, 3\)"):
        load_checkpoint(tmp_path, like=like)
    like = _payload(0)
    like["params"]["layers"][0]["b"] = jnp.zeros(4, jnp.float32)
    with pytest.raises(UserError, match=r"params\['layers'\]\[0\]\['b'\] has dtype float64"):
        load_checkpoint(tmp_path, like=like)
    like = _payload(0)
    like["params"]["extra"] = jnp.zeros(2)
    with pytest.raises(UserError, match=r"params\['extra'\] is missing"):
        load_checkpoint(tmp_path, like=like)
    like = _payload(0)
    del like["params"]["embed"]
    with pytest.raises(UserError, match="leaves the model lacks"):
        load_checkpoint(tmp_path, like=like)
    like = _payload(0)
    like["rng"]["key"] = jax.random.key(0, impl="rbg")
    with pytest.raises(UserError, match=r"rng\['key'\]"):
        load_checkpoint(tmp_path, like=like)


@pytest.mark.parametrize("failing_call", [1, 2, 3, 4, 5])
def test_crash_during_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, failing_call):
    first = _payload(1)
    save_checkpoint(tmp_path, first, {**META, "step": 1})
    real_replace, calls = os.replace, []

    def crashing_replace(source, target):
        calls.append(target)
        if len(calls) == failing_call:
            raise OSError("simulated crash")
        return real_replace(source, target)

    monkeypatch.setattr(checkpoint.os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, _payload(2), {**META, "step": 2})
    monkeypatch.undo()

    loaded, meta = load_checkpoint(tmp_path, like=_payload(0))
    _assert_bit_identical(loaded, first)
    assert meta["step"] == 1
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".partial"))]

    save_checkpoint(tmp_path, _payload(3), {**META, "step": 3})
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000003"


def test_keep_prunes_older_checkpoints(tmp_path):
    for step in range(1, 5):
        save_checkpoint(tmp_path, {"w": jnp.full(2, float(step))}, {"step": step}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latest",
        "step_00000003",
        "step_00000004",
    ]
    loaded, meta = load_checkpoint(tmp_path, like={"w": jnp.zeros(2)})
    assert meta == {"step": 4} and loaded["w"].tolist() == [4.0, 4.0]
    older, _ = load_checkpoint(tmp_path / "step_00000003", like={"w": jnp.zeros(2)})
    assert older["w"].tolist() == [3.0, 3.0]


def test_latest_falls_back_to_the_highest_complete_step(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path, {"w": jnp.zeros(1)}, {"step": 5})
    save_checkpoint(tmp_path, {"w": jnp.ones(1)}, {"step": 9})
    (tmp_path / "latest").unlink()
    (tmp_path / "step_00000012").mkdir()  # no manifest: an incomplete checkpoint
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000009"
    manifest = json.loads((tmp_path / "step_00000009" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"arrays.npz", "meta.json"}


def test_empty_subtrees_round_trip(tmp_path):
    """A model without state ({}) saves no leaves for it and loads it back as {}."""
    params = {"W": np.ones((2, 2), np.float32)}
    checkpoint.save_checkpoint(tmp_path, {"params": params, "state": {}}, {"step": 1})
    payload, _ = checkpoint.load_checkpoint(tmp_path, {"params": params, "state": {}})
    assert payload["state"] == {} and np.array_equal(payload["params"]["W"], params["W"])
