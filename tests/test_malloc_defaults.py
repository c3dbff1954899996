"""The malloc settings that import lecturenn applies (lecturenn/_malloc.py): when, and why."""

import os
import subprocess
import sys

import pytest

from lecturenn._malloc import OPT_OUT, environment, reason_to_skip

GLIBC = reason_to_skip({}) is None


def test_the_users_own_malloc_settings_and_the_opt_out_win():
    assert reason_to_skip({}, libc="glibc") is None
    assert reason_to_skip({OPT_OUT: "0"}, libc="glibc") == f"{OPT_OUT}=0"
    assert "MALLOC_ARENA_MAX" in reason_to_skip({"MALLOC_ARENA_MAX": "4"}, libc="glibc")
    tunables = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1000000"}
    assert "GLIBC_TUNABLES" in reason_to_skip(tunables, libc="glibc")
    preload = {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}
    assert reason_to_skip(preload, libc="glibc") == "LD_PRELOAD loads another allocator"
    assert reason_to_skip({}, libc="") == "the C library is not glibc"
    assert reason_to_skip({OPT_OUT: "1"}, libc="glibc") is None


# A program whose temporary buffer (the 48 MB product before the tanh) is above glibc's largest
# mmap threshold, 32 MB: warmed up, then the median of the minor page faults of 15 more calls
# (the median: a call now and then may still grow the heap while it settles).
FAULTS = """
import resource, statistics, lecturenn, jax, jax.numpy as jnp
f = jax.jit(lambda a, b: jnp.tanh(a @ b) @ b.T)
a, b = jnp.ones((4000, 8)), jnp.ones((8, 3000))
assert f.lower(a, b).compile().memory_analysis().temp_size_in_bytes >= 40e6
for _ in range(8):
    f(a, b).block_until_ready()
faults = []
for _ in range(15):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(a, b).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(statistics.median(faults))
"""


def faults_per_call(**env) -> float:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != OPT_OUT}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return float(out.stdout)


@pytest.mark.skipif(not GLIBC, reason=f"the defaults are not applied here: {reason_to_skip()}")
def test_a_compiled_call_reuses_the_memory_its_last_call_freed():
    """With the defaults, the 48 MB buffer comes back from the heap: almost no page is touched
    afresh. Without them (the opt-out), glibc maps it anew on every call and the kernel faults in
    each of its ~11,700 pages of 4 KB."""
    assert faults_per_call() < 1000
    assert faults_per_call(**{OPT_OUT: "0"}) > 8000
    # the same settings given as environment variables (how a benchmark starts PyTorch)
    assert faults_per_call(**{OPT_OUT: "0"}, **environment()) < 1000
