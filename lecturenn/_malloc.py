"""How lecturenn asks glibc's ``malloc`` to keep the memory a compiled step frees, unless told
otherwise.

Each call of a compiled XLA program on the CPU allocates the program's temporary buffer, one block
holding every intermediate of the step (45 MB for the Fashion-MNIST CNN's training step, 36 MB for
the PTB-small LSTM's; ``jax.jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes``),
and frees it when the call returns. glibc serves a block above its mmap threshold, which it will
not raise past 32 MB on 64-bit Linux, with a fresh ``mmap`` and unmaps it on ``free``; so every
call touches fresh pages, and the kernel faults in and zeroes each 4 KB page first: about 11,000
page faults a call for the CNN's step. A step called from Python paid that each time; an epoch run
as one ``lax.scan`` pays it once for all its steps. docs/performance.md ("A step called alone vs
the same step inside an epoch") has the measurements.

``import lecturenn`` therefore sets, through ``mallopt(3)``, on Linux with glibc:

- ``M_MMAP_MAX = 0``: no block is served by ``mmap``; large ones come from the heaps;
- ``M_TRIM_THRESHOLD = 1 GiB``: freed memory at a heap's top is kept for the next call instead of
  being returned to the system below that size;
- ``M_TOP_PAD = 128 MiB``: each growth of the main heap asks for 128 MB more than it needs, and a
  thread's arena (heaps of at most 64 MB) creates each heap at its full size and keeps a heap that
  empties: glibc unmaps an empty thread heap only when what would remain covers the padding.
  Without it a call still faulted in from 0 to 11,000 pages, depending on which thread's arena
  served the block.

The number of arenas stays glibc's: with one arena for every thread (``M_ARENA_MAX = 1``, an
earlier setting) the faults went away too, but XLA's threads then contended for it, and the CNN's
scan epoch ran 1.28× slower on a 2-core Xeon.

The cost: a process keeps up to 1 GiB of freed memory (the padding is address space, resident
only once touched), and a large block freed in the middle of a heap is reused rather than
returned. It changes nothing where glibc is not the allocator (macOS, Windows, musl), when the
environment already tunes glibc's malloc (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_MAX_``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, or ``glibc.malloc``
in ``GLIBC_TUNABLES``), when ``LD_PRELOAD`` loads another allocator (a path with "malloc" in its
name: jemalloc, tcmalloc, mimalloc), or with ``LECTURENN_MALLOC_DEFAULTS=0``. The settings are
process-wide and apply to arenas made before the import as well. Every run records the settings
applied (summary.json, provenance).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

OPT_OUT = "LECTURENN_MALLOC_DEFAULTS"
# (mallopt(3) parameter, its number in glibc's <malloc.h>, the value set, the environment variable
# that sets it when a process starts)
DEFAULTS = (
    ("M_MMAP_MAX", -4, 0, "MALLOC_MMAP_MAX_"),
    ("M_TRIM_THRESHOLD", -1, 1 << 30, "MALLOC_TRIM_THRESHOLD_"),
    ("M_TOP_PAD", -2, 128 << 20, "MALLOC_TOP_PAD_"),
)
USER_VARIABLES = (
    *(variable for *_, variable in DEFAULTS),
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
)

applied: dict[str, int] = {}  # what apply_defaults set in this process (provenance records it)


def c_library() -> str:
    """The C library's name if it is glibc (glibc's own answer to
    ``confstr(_CS_GNU_LIBC_VERSION)``), else the empty string."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return ""
    return "glibc" if version.startswith("glibc") else ""


def reason_to_skip(environ: Mapping[str, str] = os.environ, libc: str | None = None) -> str | None:
    """Why the defaults must not be set here (None: set them)."""
    if environ.get(OPT_OUT, "1") == "0":
        return f"{OPT_OUT}=0"
    if (libc if libc is not None else c_library()) != "glibc":
        return "the C library is not glibc"
    mine = [name for name in USER_VARIABLES if name in environ]
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        mine.append("GLIBC_TUNABLES")
    if mine:
        return f"the environment tunes malloc already ({', '.join(mine)})"
    if "malloc" in environ.get("LD_PRELOAD", ""):
        return "LD_PRELOAD loads another allocator"
    return None


def apply_defaults(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Set ``DEFAULTS`` with ``mallopt`` unless ``reason_to_skip``; return those set."""
    if reason_to_skip(environ) is not None:
        return {}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    for name, param, value, _ in DEFAULTS:
        if mallopt(param, value) == 1:
            applied[name] = value
    return dict(applied)


def environment() -> dict[str, str]:
    """The environment variables that start another process (e.g. a PyTorch process a benchmark
    compares with) under the settings ``apply_defaults`` set in this one."""
    return {variable: str(applied[name]) for name, *_, variable in DEFAULTS if name in applied}
