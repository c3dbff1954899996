"""Shared test setup: float64 for derivative checks, one compilation cache, the shared data root."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

# One XLA compilation cache for the whole test session, this process and the `lecturenn`
# subprocesses the tests start: many tests compile the same programs again (a run resumed or
# extended compiles what the reference run compiled). Programs are keyed by their HLO, flags and
# devices, so a hit returns the executable the miss compiled; nothing outlives the session.
_CACHE_LIMIT = 8 << 30  # bytes
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="lecturenn-tests-xla-cache-")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    # a size limit turns on jax's file lock: no process reads an entry another is writing
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(_CACHE_LIMIT)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
for _name in ("min_compile_time_secs", "min_entry_size_bytes"):
    jax.config.update(f"jax_persistent_cache_{_name}", 0)
jax.config.update(
    "jax_compilation_cache_max_size",
    int(os.environ.get("JAX_COMPILATION_CACHE_MAX_SIZE", _CACHE_LIMIT)),
)

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "LECTURENN_DATA" not in os.environ and _SHARED.is_dir():
    os.environ["LECTURENN_DATA"] = str(_SHARED)


@pytest.fixture
def data_root() -> Path:
    """The data root ($LECTURENN_DATA); tests that need a shared dataset skip when it is absent."""
    root = Path(os.environ.get("LECTURENN_DATA", Path.home() / ".cache" / "lecturenn"))
    if not root.is_dir():
        pytest.skip(f"shared datasets not found at {root} (set LECTURENN_DATA)")
    return root


@pytest.fixture
def float32():
    """The test runs as ``lecturenn run`` does in a fresh process: without the float64 default."""
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", True)
