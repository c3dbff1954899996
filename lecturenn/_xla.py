"""The XLA setting lecturenn starts JAX with, unless told otherwise.

XLA CPU's default scheduler orders a program's operations so that independent ones can run at
the same time on different cores (``--xla_cpu_enable_concurrency_optimized_scheduler``). On the
2-core CPU of docs/performance.md ("Every lecture model against PyTorch") the sequential order
was as fast or faster for every lecture model's training epoch, and faster for a step called
alone from Python: the CNN's step took 39 ms instead of 52, the PTB-small LSTM's 37 instead of
46, the character LSTM's 518 instead of 590; and it removed most of the gap between the
hand-written MLP step and ``jax.grad``'s.

``import lecturenn`` adds ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` to
``XLA_FLAGS`` unless ``XLA_FLAGS`` already sets that flag (then yours is kept) or
``LECTURENN_XLA_DEFAULTS=0``. XLA reads ``XLA_FLAGS`` once, when JAX first uses a device, so the
setting has no effect in a process that ran a JAX computation before importing lecturenn. The
flag only concerns XLA's CPU backend. Every run records the ``XLA_FLAGS`` it ran with
(summary.json, provenance).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DEFAULT_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",)
OPT_OUT = "LECTURENN_XLA_DEFAULTS"


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Add to ``environ["XLA_FLAGS"]`` each default flag it does not set already; return those
    added (none when ``environ[OPT_OUT] == "0"``)."""
    if environ.get(OPT_OUT, "1") == "0":
        return []
    current = environ.get("XLA_FLAGS", "")
    named = {word.split("=", 1)[0] for word in current.split()}
    added = [flag for flag in DEFAULT_FLAGS if flag.split("=", 1)[0] not in named]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
