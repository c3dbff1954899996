"""What a run was made with: library versions, the code's commit, the machine, the data's digests.

``summary.json`` of every run folder records ``provenance()``; ``eval`` compares a data file's
digest with the recorded one and warns, naming the file, when they differ. The CPU, the load
average when the summary was written (its 15-minute figure covers the end of training), any
``XLA_FLAGS`` and the malloc settings lecturenn applied (lecturenn/_malloc.py) say under what
conditions the run's times were measured.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import jax
import jaxlib

from lecturenn import _malloc
from lecturenn.data.registry import data_root


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def data_key(path: Path) -> str:
    """How the summary names a data file: relative to the data root when it lies under it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(data_root().resolve()))
    except ValueError:
        return str(path)


def git_commit() -> str | None:
    """The commit of the lecturenn checkout (with "+dirty" for uncommitted changes), if any."""
    folder = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(data_files=()) -> dict:
    devices = jax.devices()
    return {
        "lecturenn": importlib.metadata.version("lecturenn"),
        "git_commit": git_commit(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind if devices else None,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "malloc_settings": dict(_malloc.applied),
        "data": {data_key(p): file_sha256(p) for p in data_files},
    }
