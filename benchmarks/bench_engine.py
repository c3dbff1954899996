"""Training-engine speed: scan epoch vs Python loop, vmapped sweep vs sequential runs, 8 emulated
devices vs 1.

    python benchmarks/bench_engine.py            # writes benchmarks/results/engine.json

(a) steps/s of a 64-128-10 MLP at batch 32 on digits-sized data (1,437 × 64): a Python loop of
    jitted steps vs the ``lax.scan`` epoch (goal ≥ 5×).
(b) 16 random-search trials (learning rate, L2, seed) as one vmapped program vs 16 separate runs
    (goal ≥ 3×), both per epoch once compiled and end to end (``train_vmapped`` vs 16 ``loop.fit``,
    compilation included). Also timed: the trials' first-layer matmuls as the one batched
    dot_general that vmap makes vs 16 separate dots, which bounds the per-epoch gain on XLA CPU.
(c) one epoch on 8 emulated CPU devices vs 1 device (``make_parallel_epoch``), in a child process
    started with XLA_FLAGS=--xla_force_host_platform_device_count=8. Report only: the 8 "devices"
    share this machine's cores, so this measures the overhead of sharding, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from timing import block, machine, time_calls, write_json

from lecturenn.models import mlp
from lecturenn.optim.transforms import adam
from lecturenn.train import loop, sweep

BATCH_SIZE = 32
NUM_TRIALS = 16


def digits_like(seed: int = 0) -> dict:
    """scikit-learn's 8×8 digits (the 80 % training part), standardized, on device."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))[: int(0.8 * len(x))]
    x = x[order].astype(np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y[order].astype(np.int32))}


def make_model():
    return mlp.make(mlp.MLPConfig(input_dim=64, num_classes=10, hidden=(128,), activation="relu"))


def loop_vs_scan(data: dict, repeats: int) -> dict:
    model = make_model()
    params, state = model.init(jax.random.PRNGKey(0))
    opt = adam(1e-3)
    opt_state = opt.init(params)
    key = jax.random.PRNGKey(1)
    epochs = {d: loop.make_epoch(model, opt, batch_size=BATCH_SIZE, driver=d) for d in loop.DRIVERS}
    seconds = time_calls(
        {d: (lambda e=e: e(params, state, opt_state, data, key)) for d, e in epochs.items()},
        repeats=repeats,
        number=3,
    )
    steps = data["x"].shape[0] // BATCH_SIZE
    row = {f"{d}_steps_per_s": steps / s for d, s in seconds.items()}
    row["scan_over_loop"] = seconds["loop"] / seconds["scan"]
    return row


def _factory(learning_rate, l2):
    import optax

    return optax.chain(optax.add_decayed_weights(l2), adam(learning_rate))


def vmap_vs_sequential(data: dict, repeats: int, epochs: int) -> dict:
    model = make_model()
    trials = sweep.sample_trials(sweep.DEFAULT_SPACE, NUM_TRIALS, seed=0)
    lrs = np.array([t["optim.learning_rate"] for t in trials], np.float32)
    l2s = np.array([t["optim.l2"] for t in trials], np.float32)
    seeds = np.array([t["train.seed"] for t in trials])
    steps = data["x"].shape[0] // BATCH_SIZE

    # Per epoch, compiled: one vmapped epoch vs the 16 single-trial epochs one after another.
    def start(seed, lr, l2):
        params, state = model.init(jax.random.PRNGKey(seed))
        return params, state, _factory(lr, l2).init(params)

    def trial_epoch(params, state, opt_state, key, lr, l2, data):
        epoch = loop.make_epoch(model, _factory(lr, l2), batch_size=BATCH_SIZE)
        return epoch(params, state, opt_state, data, key)

    keys = jax.random.split(jax.random.PRNGKey(1), NUM_TRIALS)
    stacked = jax.vmap(start)(seeds, lrs, l2s)
    vmapped = jax.jit(jax.vmap(trial_epoch, in_axes=(0, 0, 0, 0, 0, 0, None)))
    singles = [
        (
            loop.make_epoch(model, _factory(float(lrs[i]), float(l2s[i])), batch_size=BATCH_SIZE),
            start(int(seeds[i]), float(lrs[i]), float(l2s[i])),
        )
        for i in range(NUM_TRIALS)
    ]

    def sequential():
        return [e(*s, data, keys[i]) for i, (e, s) in enumerate(singles)]

    seconds = time_calls(
        {"vmap": lambda: vmapped(*stacked, keys, lrs, l2s, data), "sequential": sequential},
        repeats=repeats,
        number=1,
    )

    # End to end, compilation included: train_vmapped vs 16 loop.fit runs.
    start_time = time.perf_counter()
    result = sweep.train_vmapped(
        model,
        _factory,
        data,
        hparams={"learning_rate": lrs, "l2": l2s},
        seeds=seeds,
        epochs=epochs,
        batch_size=BATCH_SIZE,
    )
    block(result.params)
    vmap_total = time.perf_counter() - start_time
    start_time = time.perf_counter()
    for i in range(NUM_TRIALS):
        params, _, _ = loop.fit(
            model,
            _factory(float(lrs[i]), float(l2s[i])),
            data,
            epochs=epochs,
            batch_size=BATCH_SIZE,
            key=jax.random.PRNGKey(int(seeds[i])),
        )
        block(params)
    sequential_total = time.perf_counter() - start_time
    return {
        "trials": NUM_TRIALS,
        "vmap_trial_steps_per_s": NUM_TRIALS * steps / seconds["vmap"],
        "sequential_trial_steps_per_s": NUM_TRIALS * steps / seconds["sequential"],
        "vmap_over_sequential_per_epoch": seconds["sequential"] / seconds["vmap"],
        "end_to_end_epochs": epochs,
        "vmap_end_to_end_s": vmap_total,
        "sequential_end_to_end_s": sequential_total,
        "vmap_over_sequential_end_to_end": sequential_total / vmap_total,
    }


def batched_vs_separate_matmuls(repeats: int) -> dict:
    """What limits (b) on XLA CPU: vmap turns each layer's matmul into one batched dot_general
    over the trials; this times the first layer's 16 products (32×64 · 64×128) both ways, 200 per
    call inside a fori_loop so that dispatch does not count."""
    a = jnp.full((NUM_TRIALS, BATCH_SIZE, 64), 0.01, jnp.float32)
    b = jnp.full((NUM_TRIALS, 64, 128), 0.01, jnp.float32)

    def repeated(product):
        def body(i, acc):
            return acc + product(a * (1 + i * 1e-6), b)

        zeros = jnp.zeros((NUM_TRIALS, BATCH_SIZE, 128), jnp.float32)
        return jax.jit(lambda: jax.lax.fori_loop(0, 200, body, zeros))

    fns = {
        "batched": repeated(jax.vmap(jnp.matmul)),
        "separate": repeated(lambda a, b: jnp.stack([a[i] @ b[i] for i in range(NUM_TRIALS)])),
    }
    seconds = time_calls(fns, repeats=repeats, number=2)
    return {
        "batched_dot_us_per_16_matmuls": seconds["batched"] / 200 * 1e6,
        "separate_dots_us_per_16_matmuls": seconds["separate"] / 200 * 1e6,
    }


def devices_child(repeats: int) -> dict:
    """Runs inside the 8-device child: one epoch on 8 devices vs the plain epoch on device 0."""
    from lecturenn.train import parallel

    data = digits_like()
    model = make_model()
    params, state = model.init(jax.random.PRNGKey(0))
    opt = adam(1e-3)
    opt_state = opt.init(params)
    key = jax.random.PRNGKey(1)
    mesh = parallel.make_mesh(8)
    sharded = parallel.make_parallel_epoch(model, opt, batch_size=BATCH_SIZE, mesh=mesh)
    placed = parallel.replicate((params, state, opt_state, data, key), mesh)
    one = loop.make_epoch(model, opt, batch_size=BATCH_SIZE)
    seconds = time_calls(
        {
            "eight": lambda: sharded(*placed),
            "one": lambda: one(params, state, opt_state, data, key),
        },
        repeats=repeats,
        number=3,
    )
    steps = data["x"].shape[0] // BATCH_SIZE
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
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, __file__, "--devices-child", "--repeats", str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the end-to-end sweep")
    parser.add_argument("--devices-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.devices_child:
        print(json.dumps(devices_child(args.repeats)))
        return
    data = digits_like()
    a = loop_vs_scan(data, args.repeats)
    print(
        f"(a) scan epoch {a['scan_steps_per_s']:.0f} steps/s vs loop {a['loop_steps_per_s']:.0f}"
        f" steps/s: {a['scan_over_loop']:.2f}x (goal >= 5x)"
    )
    b = vmap_vs_sequential(data, args.repeats, args.epochs)
    print(
        f"(b) {NUM_TRIALS} trials vmapped {b['vmap_trial_steps_per_s']:.0f} trial-steps/s vs "
        f"sequential {b['sequential_trial_steps_per_s']:.0f}: "
        f"{b['vmap_over_sequential_per_epoch']:.2f}x per epoch, "
        f"{b['vmap_over_sequential_end_to_end']:.2f}x end to end over {args.epochs} epochs "
        f"with compilation (goal >= 3x)"
    )
    dots = batched_vs_separate_matmuls(args.repeats)
    b.update(dots)
    print(
        f"    XLA CPU: 16 matmuls 32x64.64x128 as one batched dot "
        f"{dots['batched_dot_us_per_16_matmuls']:.0f} us vs separately "
        f"{dots['separate_dots_us_per_16_matmuls']:.0f} us"
    )
    c = eight_vs_one(args.repeats)
    print(
        f"(c) 8 emulated devices {c['eight_devices_steps_per_s']:.0f} steps/s vs 1 device "
        f"{c['one_device_steps_per_s']:.0f} steps/s: {c['eight_over_one']:.2f}x (report only)"
    )
    path = write_json(
        "engine",
        {
            "benchmark": "training_engine",
            "machine": machine(),
            "load_average_1_5_15_min": os.getloadavg(),
            "mlp": "64-128-10 relu, batch 32, adam, float32, digits train split (1437 x 64)",
            "scan_vs_loop": {**a, "goal_min_ratio": 5.0},
            "sweep_vmap_vs_sequential": {**b, "goal_min_ratio": 3.0},
            "eight_emulated_devices_vs_one": c,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
