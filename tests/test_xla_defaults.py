"""The XLA flag lecturenn adds on import: added once, never over the user's own setting."""

import os
import subprocess
import sys

from lecturenn._xla import DEFAULT_FLAGS, OPT_OUT, apply_defaults

FLAG = DEFAULT_FLAGS[0]
NAME = FLAG.split("=")[0]


def test_the_flag_is_added_to_what_xla_flags_holds_and_only_once():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert apply_defaults(env) == [FLAG]
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {FLAG}"
    assert apply_defaults(env) == [] and env["XLA_FLAGS"].count(NAME) == 1
    empty: dict = {}
    apply_defaults(empty)
    assert empty["XLA_FLAGS"] == FLAG


def test_the_users_own_setting_and_the_opt_out_win():
    mine = {"XLA_FLAGS": f"{NAME}=true"}
    assert apply_defaults(mine) == [] and mine["XLA_FLAGS"] == f"{NAME}=true"
    out = {OPT_OUT: "0"}
    assert apply_defaults(out) == [] and "XLA_FLAGS" not in out


def test_importing_lecturenn_sets_it_before_jax_starts():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", OPT_OUT)}
    # XLA refuses a flag it does not know when the backend starts: the computation proves it
    code = (
        "import lecturenn, os, jax; jax.numpy.ones(2).block_until_ready(); "
        "print(os.environ['XLA_FLAGS'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == FLAG
