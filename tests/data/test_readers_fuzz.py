"""Every reader, fed arbitrary bytes, either parses or raises the one-line ``UserError`` — never
another exception (a traceback). Property-based (hypothesis): random bytes, and mutations of a
valid file (bytes replaced, inserted, deleted), which reach deeper into each parser.

Readers: TOML configs and ``--set`` overrides, CoNLL-2003, IDX (raw and gzip), PTB word text,
character text, GloVe vectors (and gzip), and a checkpoint's manifest and meta.

``LECTURENN_FUZZ_EXAMPLES`` sets the examples per reader (default 40, the quick run of the test
suite); ``python benchmarks/fuzz_readers.py`` runs 2,000 per reader and records the counts.
``LECTURENN_FUZZ_REPORT=FILE`` makes this module write the counts of parsed and refused inputs
per reader to FILE.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lecturenn.data import conll, embeddings, images, text
from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib

EXAMPLES = int(os.environ.get("LECTURENN_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES <= 40,  # the quick run is the same every time
)
OUTCOMES: dict[str, Counter] = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    path = os.environ.get("LECTURENN_FUZZ_REPORT")
    if path:
        Path(path).write_text(json.dumps({k: dict(v) for k, v in OUTCOMES.items()}, indent=2))


def outcome(reader: str, fn, *args) -> None:
    """Run a reader: parsing and UserError are both fine; any other exception fails the test."""
    counts = OUTCOMES.setdefault(reader, Counter())
    try:
        fn(*args)
    except UserError as error:
        assert "\n" not in str(error), f"{reader}: a user error of several lines: {error}"
        counts["refused"] += 1
        return
    counts["parsed"] += 1


@st.composite
def mutated(draw, valid: bytes):
    """``valid`` with a few random edits: bytes replaced, inserted or deleted, or cut short."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[at]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


def inputs(valid: bytes):
    return st.one_of(st.binary(max_size=300), mutated(valid))


# --- configs ----------------------------------------------------------------------------------

CONFIG = b"""name = "fuzz"
[data]
name = "digits"
[model]
kind = "mlp"
hidden = [8, 4]
dropout = 0.2
[optim]
name = "adam"
learning_rate = 1e-3
schedule = { kind = "step_decay", step_size = 10, factor = 0.5 }
[train]
epochs = 2
batch_size = 16
"""


@SETTINGS
@given(data=inputs(CONFIG))
def test_config_files(tmp_path, data):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    outcome("config file", config_lib.load_config, path)


@SETTINGS
@given(
    key=st.sampled_from(
        [
            "model.hidden",
            "model.dropout",
            "optim.learning_rate",
            "train.epochs",
            "optim.schedule",
            "data.name",
            "model.kind",
            "train.monitor",
            "name",
            "optim",
            "x.y.z",
            "train",
        ]
    )
    | st.text(max_size=20),
    value=st.text(max_size=30),
)
def test_set_overrides(tmp_path, key, value):
    path = tmp_path / "base.toml"
    path.write_bytes(CONFIG)
    outcome("--set", config_lib.load_config, path, [f"{key}={value}"])


# --- data files -------------------------------------------------------------------------------

CONLL = b"""-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


@SETTINGS
@given(data=inputs(CONLL))
def test_conll(tmp_path, data):
    path = tmp_path / "eng.train"
    path.write_bytes(data)
    outcome("CoNLL-2003", conll.read_conll, path)


def _idx(values: np.ndarray, magic: int) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in values.shape)
    return magic.to_bytes(4, "big") + dims + values.astype(">u1").tobytes()


IDX_IMAGES = _idx(np.arange(2 * 3 * 3).reshape(2, 3, 3) % 256, images.IMAGES_MAGIC)


@SETTINGS
@given(data=inputs(IDX_IMAGES), zipped=st.booleans())
def test_idx(tmp_path, data, zipped):
    path = tmp_path / "images.idx"
    path.write_bytes(gzip.compress(data) if zipped else data)
    outcome("IDX", lambda p: images.read_idx(p, expected_magic=images.IMAGES_MAGIC), path)


PTB = b" the cat sat on the mat \n the dog sat \n"


@SETTINGS
@given(train=inputs(PTB), valid=inputs(PTB))
def test_ptb_text(tmp_path, train, valid):
    folder = tmp_path / "ptb"
    folder.mkdir(exist_ok=True)
    (folder / "ptb.train.txt").write_bytes(train)
    (folder / "ptb.valid.txt").write_bytes(valid)
    (folder / "ptb.test.txt").write_bytes(PTB)
    outcome("PTB text", text.load_ptb, tmp_path)


@SETTINGS
@given(data=inputs(b"First Citizen:\nBefore we proceed, hear me speak.\n"))
def test_char_text(tmp_path, data):
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    outcome("character text", text.load_chars, path)


GLOVE = b"the 0.418 0.24968 -0.41242\n, 0.013441 0.23682 -0.16899\nparis 0.1 -0.5 2e-3\n"


@SETTINGS
@given(data=inputs(GLOVE), zipped=st.booleans())
def test_glove(tmp_path, data, zipped):
    path = tmp_path / "vectors.txt"
    path.write_bytes(gzip.compress(data) if zipped else data)
    outcome("GloVe", embeddings.load_word_vectors, path, ["the", "paris", "london"])
    outcome("GloVe words", embeddings.read_vocab_words, path)


# --- checkpoints ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import jax.numpy as jnp

    from lecturenn.train import checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    like = {"params": {"W": jnp.ones((2, 3)), "b": jnp.zeros(3)}}
    step = checkpoint.save_checkpoint(folder, like, {"step": 1, "history": {"epochs": []}})
    return step, like


def _load(step, like):
    from lecturenn.train import checkpoint

    checkpoint.load_checkpoint(step, like)


@SETTINGS
@given(data=st.data())
def test_checkpoint_manifest(saved, tmp_path, data):
    step, like = saved
    copy = tmp_path / step.name
    if not copy.exists():
        copy.mkdir()
        for f in step.iterdir():
            (copy / f.name).write_bytes(f.read_bytes())
    valid = (step / "manifest.json").read_bytes()
    (copy / "manifest.json").write_bytes(data.draw(inputs(valid)))
    outcome("checkpoint manifest", _load, copy, like)


@SETTINGS
@given(data=st.data())
def test_checkpoint_meta(saved, tmp_path, data):
    """A meta.json that passes the manifest (its digest rewritten) but holds anything."""
    step, like = saved
    copy = tmp_path / step.name
    if not copy.exists():
        copy.mkdir()
        for f in step.iterdir():
            (copy / f.name).write_bytes(f.read_bytes())
    meta = data.draw(inputs((step / "meta.json").read_bytes()))
    (copy / "meta.json").write_bytes(meta)
    manifest = json.loads((step / "manifest.json").read_bytes())
    manifest["files"]["meta.json"] = {"sha256": hashlib.sha256(meta).hexdigest(), "size": len(meta)}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    outcome("checkpoint meta", _load, copy, like)
