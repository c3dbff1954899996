"""Training-engine speed: scan epoch vs Python loop, vmapped sweep vs sequential runs, 8 emulated
devices vs 1.

    python benchmarks/bench_engine.py            # writes benchmarks/results/engine.json

(a) steps/s of a 64-128-10 MLP at batch 32 on digits (1,437 × 64): a Python loop of jitted steps
    vs the ``lax.scan`` epoch (goal ≥ 5×).
(b) 16 random-search trials (learning rate, L2 or dropout, seed) trained as one vmapped program
    (``train.trials``) vs the same 16 trials' epochs one after another, each its own compiled
    scan epoch (goal ≥ 3× trial-steps/s per epoch), for three configs: the quickstart MLP on
    digits, the window tagger on a part of CoNLL-2003 and the PTB-small LSTM on a part of PTB.
    Beside them, ``train_vmapped(per_call=1)``: one compiled unbatched program, the trials'
    values traced, called for one trial after another; and what ``lecturenn sweep``'s
    ``--trials-per-call auto`` picks from XLA's estimate of a step's flops. The MLP row also
    reports end to end (compilation included): ``train_vmapped`` vs 16 ``loop.fit`` runs.
(c) one epoch on 8 emulated CPU devices vs 1 device, in a child process started with
    XLA_FLAGS=--xla_force_host_platform_device_count=8. Report only: the 8 "devices" share this
    machine's cores, so this measures the overhead of sharding, not a speed-up.
(d) the scan epoch with a progress listener (``lecturenn run``'s own, writing a line on every
    report to a file-like object) vs without: the PTB-small LSTM on 40,000 training words, an
    epoch of seconds where a run reports within epochs (goal: within 3 %), and the MLP on digits,
    an epoch of milliseconds, where the callbacks cost a multiple of the epoch (report only: the
    runner compiles such epochs without them after the first, experiments/progress.py).

Every timing is a median over interleaved rounds; the spread (min and max over the rounds) is
recorded beside it, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from timing import block, machine, time_calls, write_json

from lecturenn.cli import Parser
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import schemas, sweep
from lecturenn.experiments.tasks import TASKS
from lecturenn.experiments.tasks.base import make_epoch, make_optimizer
from lecturenn.train import epochs as epochs_lib
from lecturenn.train import loop, parallel, trials
from lecturenn.train.step import make_step

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
NUM_TRIALS = 16
CASES = {
    "mlp_digits": ("quickstart_digits", ["train.batch_size=32"]),
    "window_tagger_conll": (
        "ner_window",
        ["data.limit_train=1024", "data.limit_eval=64"],
    ),
    "lstm_ptb_small": ("ptb_lstm_small", ["data.limit_train=40000", "data.limit_eval=2000"]),
}


class Case:
    """A config's task set up once, and the pieces a sweep of it is built from."""

    def __init__(self, config: str, overrides: list[str]):
        self.cfg = config_lib.load_config(ROOT / "configs" / f"{config}.toml", overrides)
        self.setup = TASKS[schemas.task_of(self.cfg)].build(self.cfg)
        self.module = schemas.MODELS[schemas.kind_of(self.setup.model_config)].module
        self.params_shape, _ = jax.eval_shape(self.setup.model.init, jax.random.PRNGKey(0))
        self.traced = [
            k for k in sweep.vectorizable(type(self.cfg.model)) if k.startswith("model.")
        ]

    def hparams(self) -> dict:
        space = {
            "optim.learning_rate": {"log_uniform": [1e-4, 1e-1]},
            "train.seed": {"int": [0, 99]},
        }
        if self.traced:
            space[self.traced[0]] = {"uniform": [0.0, 0.5]}
        else:
            space["optim.l2"] = {"log_uniform": [1e-6, 1e-2]}
        drawn = sweep.sample_trials(space, NUM_TRIALS, seed=0)
        values = {
            k: np.asarray([t[k] for t in drawn], np.float32) for k in space if k != "train.seed"
        }
        return values, [t["train.seed"] for t in drawn]

    def build(self, hp: dict):
        model_keys = {k.removeprefix("model."): v for k, v in hp.items() if k.startswith("model.")}
        model_cfg = self.setup.model_config
        if model_keys:
            import dataclasses

            model_cfg = dataclasses.replace(model_cfg, **model_keys)
        optim = self.cfg.optim
        import dataclasses

        optim = dataclasses.replace(
            optim,
            learning_rate=hp["optim.learning_rate"],
            **({"l2": hp["optim.l2"]} if "optim.l2" in hp else {}),
        )
        optimizer = make_optimizer(optim, self.params_shape, None, self.setup.steps_per_epoch)
        return self.module.make(model_cfg), optimizer

    def epoch(self, step):
        return make_epoch(self.setup, step, self.cfg.train, driver="scan")


class SweepPrograms(NamedTuple):
    """A case's 16 trials, set up as ``train_vmapped`` sets them up for one epoch."""

    case: Case
    hparams: dict
    starts: list  # each trial's (params, state, opt_state)
    stacked: tuple  # the same with a leading trial axis, and the trials' values (hp)
    keys: jax.Array
    plans: Any
    axes: Any
    vmapped: Any  # all trials in one call
    single: Any  # one trial's unbatched epoch, its values traced (per_call=1)


def sweep_programs(name: str) -> SweepPrograms:
    case = Case(*CASES[name])
    hparams, seeds = case.hparams()

    def start(seed, hp):
        model, optimizer = case.build(hp)
        params, state = model.init(jax.random.PRNGKey(seed))
        return params, state, optimizer.init(params)

    starts = [jax.jit(start)(s, {k: v[i] for k, v in hparams.items()}) for i, s in enumerate(seeds)]
    hp = {k: jnp.asarray(v) for k, v in hparams.items()}
    stacked = (*jax.tree_util.tree_map(lambda *x: jnp.stack(x), *starts), hp)
    keys = jax.random.split(jax.random.PRNGKey(1), NUM_TRIALS)
    planner = case.epoch(make_step(*case.build({k: v[0] for k, v in hparams.items()}), jit=False))
    plans, axes = planner.trial_plans(keys)
    run = trials.trial_epoch(case.build, case.epoch, case.cfg.train.grads)
    vmapped = jax.jit(jax.vmap(run, in_axes=(0, 0, 0, 0, 0, None, axes)))
    return SweepPrograms(case, hparams, starts, stacked, keys, plans, axes, vmapped, jax.jit(run))


def vmap_vs_sequential(name: str, repeats: int) -> dict:
    p = sweep_programs(name)
    case, hparams, train = p.case, p.hparams, p.case.setup.train
    active = jnp.ones(NUM_TRIALS, bool)
    first = trials.trial_slice(p.stacked, 0)
    flops = trials.step_flops(p.single, *first, train, trials.take_trials(p.plans, p.axes, 0))
    one_by_one = [(i, i + 1) for i in range(NUM_TRIALS)]
    everyone = np.ones(NUM_TRIALS, bool)

    def one_per_call():  # what train_vmapped(per_call=1) runs in an epoch
        args = (p.stacked, everyone, train, (p.plans, p.axes))
        return trials.run_slices(p.vmapped, p.single, one_by_one, *args)

    # the same trials one after another, each its own compiled epoch
    singles = []
    for i in range(NUM_TRIALS):
        concrete = {k: float(v[i]) for k, v in hparams.items()}
        epoch = case.epoch(make_step(*case.build(concrete), case.cfg.train.grads, jit=False))
        singles.append((epoch, p.starts[i]))

    def sequential():
        return [epoch(*s, train, p.keys[i]) for i, (epoch, s) in enumerate(singles)]

    seconds, spread = time_calls(
        {
            "vmap": lambda: p.vmapped(*p.stacked, active, train, p.plans),
            "one_per_call": one_per_call,
            "sequential": sequential,
        },
        repeats=repeats,
        number=1,
        spread=True,
    )
    steps = case.setup.steps_per_epoch
    return {
        "config": f"configs/{CASES[name][0]}.toml with --set {' '.join(CASES[name][1])}",
        "swept": sorted(hparams) + ["train.seed"],
        "steps_per_epoch": steps,
        "vmap_trial_steps_per_s": NUM_TRIALS * steps / seconds["vmap"],
        "sequential_trial_steps_per_s": NUM_TRIALS * steps / seconds["sequential"],
        "one_per_call_trial_steps_per_s": NUM_TRIALS * steps / seconds["one_per_call"],
        "vmap_over_sequential_per_epoch": seconds["sequential"] / seconds["vmap"],
        "one_per_call_over_sequential_per_epoch": seconds["sequential"] / seconds["one_per_call"],
        "step_flops": flops,
        "auto_per_call": trials.auto_per_call(flops, NUM_TRIALS),
        "seconds_median_min_max": spread,
        "goal_min_ratio": 3.0,
    }


def sweep_case(name: str, repeats: int) -> dict:
    row = vmap_vs_sequential(name, repeats)
    print(
        f"(b) {name}: {NUM_TRIALS} trials vmapped {row['vmap_trial_steps_per_s']:.0f} "
        f"trial-steps/s, one per call {row['one_per_call_trial_steps_per_s']:.0f}, sequential "
        f"{row['sequential_trial_steps_per_s']:.0f}: {row['vmap_over_sequential_per_epoch']:.2f}x "
        f"and {row['one_per_call_over_sequential_per_epoch']:.2f}x per epoch (goal >= 3x); "
        f"auto picks {row['auto_per_call']} per call ({row['step_flops']:.3g} flops a step)",
        flush=True,
    )
    return row


def end_to_end(epochs: int) -> dict:
    """train_vmapped vs 16 loop.fit runs of the MLP, compilation included."""
    case = Case(*CASES["mlp_digits"])
    hparams, seeds = case.hparams()
    start = time.perf_counter()
    result = trials.train_vmapped(
        case.build, case.epoch, case.setup.train, hparams=hparams, seeds=seeds, epochs=epochs
    )
    block(result.params)
    vmap_total = time.perf_counter() - start
    start = time.perf_counter()
    for i, seed in enumerate(seeds):
        model, optimizer = case.build({k: float(v[i]) for k, v in hparams.items()})
        epoch = case.epoch(make_step(model, optimizer, jit=False))
        params, _, _ = loop.fit(
            model,
            optimizer,
            case.setup.train,
            epochs=epochs,
            key=jax.random.PRNGKey(seed),
            epoch_fn=epoch,
        )
        block(params)
    sequential_total = time.perf_counter() - start
    return {
        "end_to_end_epochs": epochs,
        "vmap_end_to_end_s": vmap_total,
        "sequential_end_to_end_s": sequential_total,
        "vmap_over_sequential_end_to_end": sequential_total / vmap_total,
    }


def loop_vs_scan(repeats: int) -> dict:
    case = Case(*CASES["mlp_digits"])
    model, optimizer = case.build({"optim.learning_rate": 1e-3, "model.dropout": 0.2})
    params, state = model.init(jax.random.PRNGKey(0))
    opt_state = optimizer.init(params)
    key = jax.random.PRNGKey(1)
    data = case.setup.train
    step = make_step(model, optimizer, jit=False)
    fns = {
        d: epochs_lib.shuffled(step, num_examples=data["x"].shape[0], batch_size=32, driver=d)
        for d in epochs_lib.DRIVERS
    }
    seconds, spread = time_calls(
        {d: (lambda e=e: e(params, state, opt_state, data, key)) for d, e in fns.items()},
        repeats=repeats,
        number=3,
        spread=True,
    )
    steps = data["x"].shape[0] // 32
    row = {f"{d}_steps_per_s": steps / s for d, s in seconds.items()}
    row["scan_over_loop"] = seconds["loop"] / seconds["scan"]
    row["seconds_median_min_max"] = spread
    return row


def with_and_without_progress(name: str, repeats: int) -> dict:
    """One scan epoch of a case with lecturenn run's progress listener attached and without."""
    import io

    from lecturenn.experiments.progress import Progress

    case = Case(*CASES[name])
    model, optimizer = case.build({"optim.learning_rate": 1e-3})
    params, state = model.init(jax.random.PRNGKey(0))
    opt_state = optimizer.init(params)
    key = jax.random.PRNGKey(1)
    data = case.setup.train
    step = make_step(model, optimizer, case.cfg.train.grads, jit=False)
    listener = Progress(1, case.setup.steps_per_epoch, stream=io.StringIO())
    listener.every = 0.0  # a line on every tick: the most work a listener does
    fns = {
        "plain": make_epoch(case.setup, step, case.cfg.train, driver="scan"),
        "progress": make_epoch(
            case.setup, step, case.cfg.train, driver="scan", progress=listener.step
        ),
    }
    seconds, spread = time_calls(
        {k: (lambda e=e: e(params, state, opt_state, data, key)) for k, e in fns.items()},
        repeats=repeats,
        number=3,
        spread=True,
    )
    return {
        "steps_per_epoch": case.setup.steps_per_epoch,
        "progress_over_plain_time": seconds["progress"] / seconds["plain"],
        "seconds_median_min_max": spread,
        "lines_written": listener.stream.getvalue().count("\n"),
        "goal_max_ratio": 1.03 if name == "lstm_ptb_small" else None,
    }


def devices_child(repeats: int) -> dict:
    """Runs inside the 8-device child: one epoch on 8 devices vs the plain epoch on device 0."""
    case = Case(*CASES["mlp_digits"])
    model, optimizer = case.build({"optim.learning_rate": 1e-3, "model.dropout": 0.2})
    params, state = model.init(jax.random.PRNGKey(0))
    opt_state = optimizer.init(params)
    key = jax.random.PRNGKey(1)
    data = case.setup.train
    n = data["x"].shape[0]
    mesh = parallel.make_mesh(8)
    sharded_step = make_step(parallel.shard_model(model, mesh), optimizer, jit=False)
    eight = parallel.on_mesh(epochs_lib.shuffled(sharded_step, num_examples=n, batch_size=32), mesh)
    one = epochs_lib.shuffled(make_step(model, optimizer, jit=False), num_examples=n, batch_size=32)
    seconds = time_calls(
        {
            "eight": lambda: eight(params, state, opt_state, data, key),
            "one": lambda: one(params, state, opt_state, data, key),
        },
        repeats=repeats,
        number=3,
    )
    steps = n // 32
    return {
        "devices": jax.device_count(),
        "one_device_steps_per_s": steps / seconds["one"],
        "eight_devices_steps_per_s": steps / seconds["eight"],
        "eight_over_one": seconds["one"] / seconds["eight"],
    }


def eight_vs_one(repeats: int) -> dict:
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, __file__, "--devices-child", "--repeats", str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def progress_section(repeats: int) -> dict:
    d = {}
    for name in ("mlp_digits", "lstm_ptb_small"):
        d[name] = with_and_without_progress(name, repeats)
        goal = "goal <= 1.03x" if d[name]["goal_max_ratio"] else "report only"
        print(
            f"(d) {name}: scan epoch with progress {d[name]['progress_over_plain_time']:.3f}x "
            f"the time without ({goal})"
        )
    return d


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the end-to-end sweep")
    parser.add_argument("--only", nargs="*", default=list(CASES), help="sweep cases to time")
    parser.add_argument("--devices-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--progress-only", action="store_true", help="only (d)")
    parser.add_argument("--sweep-only", action="store_true", help="only (b), per epoch")
    args = parser.parse_args()
    if args.devices_child:
        print(json.dumps(devices_child(args.repeats)))
        return
    load_before = os.getloadavg()
    if args.progress_only:  # re-measure (d) alone, replacing it in an existing engine.json
        d = progress_section(args.repeats)
        path = RESULTS / "engine.json"
        results = json.loads(path.read_text()) if path.exists() else {"machine": machine()}
        load = {"before": load_before, "after": os.getloadavg()}
        results["scan_epoch_with_progress_vs_without"] = {**d, "load_average_1_5_15_min": load}
        print(f"-> {write_json('engine', results)}")
        return
    if args.sweep_only:  # re-measure (b) per epoch, keeping the end-to-end figures
        path = RESULTS / "engine.json"
        results = json.loads(path.read_text())
        b = results["sweep_vmap_vs_sequential"]
        for name in args.only:
            b[name] = {**b.get(name, {}), **sweep_case(name, args.repeats)}
        load = {"before": load_before, "after": os.getloadavg()}
        results["sweep_load_average_1_5_15_min"] = load
        print(f"-> {write_json('engine', results)}")
        return
    a = loop_vs_scan(args.repeats)
    print(
        f"(a) scan epoch {a['scan_steps_per_s']:.0f} steps/s vs loop {a['loop_steps_per_s']:.0f}"
        f" steps/s: {a['scan_over_loop']:.2f}x (goal >= 5x)"
    )
    b = {name: sweep_case(name, args.repeats) for name in args.only}
    if "mlp_digits" in b:
        b["mlp_digits"].update(end_to_end(args.epochs))
        print(f"    end to end: {b['mlp_digits']['vmap_over_sequential_end_to_end']:.2f}x")
    c = eight_vs_one(args.repeats)
    print(
        f"(c) 8 emulated devices {c['eight_devices_steps_per_s']:.0f} steps/s vs 1 device "
        f"{c['one_device_steps_per_s']:.0f} steps/s: {c['eight_over_one']:.2f}x (report only)"
    )
    d = progress_section(args.repeats)
    path = write_json(
        "engine",
        {
            "benchmark": "training_engine",
            "machine": machine(),
            "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
            "scan_vs_loop": {**a, "goal_min_ratio": 5.0},
            "sweep_vmap_vs_sequential": b,
            "eight_emulated_devices_vs_one": c,
            "scan_epoch_with_progress_vs_without": d,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
