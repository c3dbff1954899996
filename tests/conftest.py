"""Shared test setup: float64 for derivative checks, and the shared data root."""

import os
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

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
