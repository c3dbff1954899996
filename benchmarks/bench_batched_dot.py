"""What a vmapped sweep's matmuls cost: 16 trials' (32 × 64) · (64 × 128) products — the first
layer of the quickstart MLP at batch 32 — as one batched ``dot_general`` (what ``jax.vmap``
makes of them) vs 16 separate dots in one program vs a single dot, forward and weight gradient.

    python benchmarks/bench_batched_dot.py      # writes benchmarks/results/batched_dot.json

If the batched dot cost much more than the separate ones, a sweep would have to be laid out
differently (e.g. trials as one larger matmul); if it costs less, the vmapped step is bound by
its arithmetic and the sweep's gain over sequential runs is what the trials' shared dispatch
saves. Median µs over interleaved rounds, with [median, min, max].
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from timing import machine, time_calls, write_json

TRIALS, BATCH, IN, OUT = 16, 32, 64, 128


def main() -> None:
    load_before = os.getloadavg()
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (TRIALS, BATCH, IN))
    w = jax.random.normal(keys[1], (TRIALS, IN, OUT))
    g = jax.random.normal(keys[2], (TRIALS, BATCH, OUT))
    fns = {
        "forward_batched": jax.jit(lambda x, w: jnp.einsum("tbi,tio->tbo", x, w)),
        "forward_separate": jax.jit(lambda x, w: jnp.stack([x[i] @ w[i] for i in range(TRIALS)])),
        "forward_one_trial": jax.jit(lambda x, w: x[0] @ w[0]),
        "weight_grad_batched": jax.jit(lambda x, g: jnp.einsum("tbi,tbo->tio", x, g)),
        "weight_grad_separate": jax.jit(
            lambda x, g: jnp.stack([x[i].T @ g[i] for i in range(TRIALS)])
        ),
    }
    operands = {"forward": (x, w), "weight_grad": (x, g)}

    def call(name):
        f, a = fns[name], operands["forward" if name.startswith("forward") else "weight_grad"]
        return lambda: f(*a)

    calls = {name: call(name) for name in fns}
    _, spread = time_calls(calls, repeats=7, number=500, spread=True)
    micro = {name: [round(1e6 * s, 2) for s in v] for name, v in spread.items()}
    flops = 2 * TRIALS * BATCH * IN * OUT
    result = {
        "benchmark": "batched_dot",
        "machine": machine(),
        "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "shape": {"trials": TRIALS, "batch": BATCH, "in": IN, "out": OUT},
        "us_median_min_max": micro,
        "batched_over_separate_time": {
            "forward": micro["forward_batched"][0] / micro["forward_separate"][0],
            "weight_grad": micro["weight_grad_batched"][0] / micro["weight_grad_separate"][0],
        },
        "batched_forward_gflops": flops / (micro["forward_batched"][0] * 1e3),
    }
    for name, v in micro.items():
        print(f"{name:>22}: {v[0]:8.1f} µs  [{v[1]:.1f}, {v[2]:.1f}]")
    print(f"-> {write_json('batched_dot', result)}")


if __name__ == "__main__":
    main()
