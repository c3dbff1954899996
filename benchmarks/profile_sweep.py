"""Where a sweep's epoch goes: 16 trials in one vmapped call vs one trial's unbatched epoch.

    python benchmarks/profile_sweep.py [--only window_tagger_conll] [--calls 2]
    # writes benchmarks/results/profile_sweep.json

For bench_engine.py's sweep cases (16 trials of a config, the learning rate, a dropout rate and
the seed drawn at random), the epoch program of all 16 trials in one call (what ``jax.vmap``
makes, ``train_vmapped``'s default) and the unbatched epoch of the first trial (what
``per_call=1`` calls once per trial) are each traced under ``jax.profiler`` and summed per
operation, as ``profile_steps.py`` does for single steps. ``per_trial_ms`` divides the vmapped
program's time by 16, so the two columns compare the same work; the top operations of each are
listed with their shapes, the vmapped ones carrying the trial axis first.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
from bench_engine import CASES, NUM_TRIALS, sweep_programs
from profile_steps import profile
from timing import machine, write_json

from lecturenn.cli import Parser
from lecturenn.train import trials


def profile_case(name: str, calls: int) -> dict:
    p = sweep_programs(name)
    train = p.case.setup.train
    everyone = jnp.ones(NUM_TRIALS, bool)
    vmapped = profile(p.vmapped, (*p.stacked, everyone, train, p.plans), calls)
    first = trials.trial_slice(p.stacked, 0)
    plan = trials.take_trials(p.plans, p.axes, 0)
    single = profile(p.single, (*first, jnp.asarray(True), train, plan), calls)
    return {
        "config": f"configs/{CASES[name][0]}.toml with --set {' '.join(CASES[name][1])}",
        "vmapped_16_trials": {
            **vmapped,
            "per_trial_ms": vmapped["traced_op_ms_per_step"] / NUM_TRIALS,
        },
        "one_trial_unbatched": {**single, "per_trial_ms": single["traced_op_ms_per_step"]},
    }


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["window_tagger_conll"], choices=list(CASES))
    parser.add_argument("--calls", type=int, default=2, help="epochs traced per program")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = {}
    for name in args.only:
        rows[name] = profile_case(name, args.calls)
        v, s = rows[name]["vmapped_16_trials"], rows[name]["one_trial_unbatched"]
        print(
            f"{name}: traced ms per trial-epoch, vmapped {v['per_trial_ms']:.1f}, "
            f"unbatched {s['per_trial_ms']:.1f}",
            flush=True,
        )
    print(
        write_json(
            "profile_sweep",
            {
                "benchmark": "sweep_epoch_profile",
                "machine": machine(),
                "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
                "epochs_traced": args.calls,
                "cases": rows,
            },
        )
    )


if __name__ == "__main__":
    main()
