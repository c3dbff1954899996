"""How fast a training step could be on this CPU: each model's matrix-product FLOPs per step, the
machine's fp32 matrix-product peak, and the step times of lecturenn and PyTorch measured beside
them, so a speed goal can be checked against what the hardware allows.

    python benchmarks/roofline.py [--only char_lstm ...] [--rounds 3]
    # writes benchmarks/results/roofline.json
    python benchmarks/roofline.py --no-models --kernel-dtypes float32 bfloat16
    # the peak and the LSTMs' products only, each in both dtypes: roofline_kernels.json

Three parts, in one run:

* **peak**: a 2048×2048×2048 fp32 product, jitted in JAX and in PyTorch 2.13 (a child process,
  1 and 2 threads), interleaved by round; the peak is the best rate either library reached.
  Beside it, for reference only, the same product in bfloat16 (JAX: bfloat16 operands, float32
  accumulation and result; PyTorch: bfloat16 in and out): what a mixed-precision step could
  draw on where the CPU has bfloat16 matrix units.
* **kernels**: the products the LSTM LMs make, at their own shapes (row-major A (m, k) @ B (k, n),
  both contiguous), timed the same way: how fast XLA's CPU matrix kernels are against PyTorch's
  where the models spend their time. A time step's product is timed as the loop makes it: the
  T products of a layer's T steps in one call (in JAX a ``lax.scan`` inside one jitted call, in
  PyTorch a Python loop), each step's A a different slice. ``--kernel-dtypes float32 bfloat16``
  times each product in both dtypes (bfloat16 as the peak's), to see whether XLA's bfloat16
  kernels would give a mixed-precision step the edge its fp32 ones lack.
* **models**: for each model (bench_models.py's networks at their configs' sizes), the FLOPs of
  every ``dot_general`` and ``conv_general_dilated`` in the hand-written step's jaxpr (a scan's
  body counted once per iteration; elementwise work, gathers and scatters not counted), and the
  step times of bench_models.py's ``measure`` (hand-written, ``jax.grad``, PyTorch with the
  faster of 1 and 2 threads, interleaved by round). From these: the rate each one reaches, the
  *floor* (the products alone at the peak rate), and the *ceiling* PyTorch's step / floor, the
  largest speed-up over PyTorch that any implementation of the same step could reach in fp32 on
  this machine. The ceiling is generous: it gives the rest of the step (gates, softmax, dropout,
  the optimizer) no time at all.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
from timing import each_with_load, machine, spread, time_rounds, write_json

from lecturenn.cli import Parser

MODELS = ("lstm_ptb_small", "char_lstm", "cnn_fashion", "window_tagger", "nplm", "rnn_lm")
PEAK = {"float32": (2048, 2048, 2048, 1), "bfloat16": (2048, 2048, 2048, 1, "bfloat16")}
# (m, k, n, products in one call[, dtype, float32 unless named]) of the products a training step
# makes: forward x W, the recurrent h W_h, and the backward's δx = δz Wᵀ, δh = δz W_hᵀ,
# dW = xᵀ δz (k = the T·B rows).
KERNELS = {
    "char_lstm": {
        "input projection x W_x": (6400, 512, 2048, 1),
        "recurrent h W_h, 100 steps": (64, 512, 2048, 100),
        "δh = δz W_hᵀ, 100 steps": (64, 2048, 512, 100),
        "δx = δz W_xᵀ": (6400, 2048, 512, 1),
        "dW = xᵀ δz": (512, 6400, 2048, 1),
    },
    "lstm_ptb_small": {
        "input projection x W_x": (400, 200, 800, 1),
        "recurrent h W_h, 20 steps": (20, 200, 800, 20),
        "softmax layer h W": (400, 200, 10000, 1),
        "softmax layer δh = δs Wᵀ": (400, 10000, 200, 1),
        "softmax layer dW = hᵀ δs": (200, 400, 10000, 1),
    },
}


# ---------------------------------------------------------------------------------------------
# FLOPs of a jaxpr


def _sub_jaxprs(value):
    """The jaxprs held by one equation parameter (a jaxpr, a closed jaxpr, or a tuple of them)."""
    from jax.extend import core

    if isinstance(value, core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, core.Jaxpr):
        return [value]
    if isinstance(value, tuple | list):
        return [j for v in value for j in _sub_jaxprs(v)]
    return []


def _dot_flops(eqn) -> int:
    (contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape
    return 2 * math.prod(out) * math.prod(lhs[d] for d in contract)


def _valid_taps(size: int, out: int, taps: int, stride: int, pad_lo: int, dil_in: int, dil_k: int):
    """Σ over the outputs along one spatial axis of the kernel taps that land on the input, not on
    padding or on the holes of a dilated input."""
    o = np.arange(out)[:, None]
    p = o * stride - pad_lo + np.arange(taps)[None, :] * dil_k
    return int(((p >= 0) & (p <= (size - 1) * dil_in) & (p % dil_in == 0)).sum())


def _conv_flops(eqn) -> int:
    """2 × (batch × out features × in features per group) × the taps on real input: padding
    costs nothing (as in XLA's cost analysis)."""
    params = eqn.params
    if params["batch_group_count"] != 1:
        raise NotImplementedError("conv_general_dilated with batch_group_count > 1")
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    dims = params["dimension_numbers"]
    taps = 1
    for axis, (lhs_d, rhs_d, out_d) in enumerate(
        zip(dims.lhs_spec[2:], dims.rhs_spec[2:], dims.out_spec[2:], strict=True)
    ):
        taps *= _valid_taps(
            lhs[lhs_d],
            out[out_d],
            rhs[rhs_d],
            params["window_strides"][axis],
            params["padding"][axis][0],
            params["lhs_dilation"][axis],
            params["rhs_dilation"][axis],
        )
    per_tap = out[dims.out_spec[0]] * out[dims.out_spec[1]] * rhs[dims.rhs_spec[1]]
    return 2 * per_tap * taps


def matmul_flops(jaxpr) -> int:
    """FLOPs (2 per multiply-add) of the matrix products and convolutions of ``jaxpr`` (a jaxpr or
    closed jaxpr), nested calls included: a ``scan`` body counts ``length`` times, a ``cond`` its
    costliest branch. A ``while`` loop's trip count is unknown before it runs: refused."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "while":
            raise NotImplementedError("a while loop's FLOPs depend on its trip count")
        elif name == "cond":
            total += max(matmul_flops(b) for b in eqn.params["branches"])
        else:
            inner = sum(matmul_flops(j) for v in eqn.params.values() for j in _sub_jaxprs(v))
            total += inner * (eqn.params["length"] if name == "scan" else 1)
    return total


# ---------------------------------------------------------------------------------------------
# Matrix-product rates, JAX here and PyTorch in a child process


def _number(m: int, k: int, n: int, steps: int) -> int:
    """Calls per timed round: about 0.25 s of work at 200 GFLOP/s (the 2048³ peak product: 3)."""
    return max(3, round(0.25 / (2 * m * k * n * steps / 2e11)))


def in_dtypes(shapes: dict, dtypes: list[str]) -> dict:
    """The float32 shapes of ``KERNELS``, once per dtype ("NAME (bfloat16)" for the others)."""
    return {
        name if dtype == "float32" else f"{name} ({dtype})": (
            shape if dtype == "float32" else (*shape, dtype)
        )
        for dtype in dtypes
        for name, shape in shapes.items()
    }


def jax_matmul_calls(shapes: dict) -> dict:
    """{name: (zero-argument call, calls per round)}; a call makes ``steps`` products."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(0)

    def product(a, b):  # float32 accumulation and result, whatever the operands' dtype
        return jnp.dot(a, b, preferred_element_type=jnp.float32)

    @jax.jit
    def loop(a, b):  # a: (steps, m, k)
        return lax.scan(lambda carry, a_t: (carry, product(a_t, b)), None, a)[1]

    calls = {}
    for name, (m, k, n, steps, *dtype) in shapes.items():
        dtype = jnp.dtype(dtype[0] if dtype else "float32")
        a = jnp.asarray(rng.standard_normal((steps, m, k)), dtype)
        b = jnp.asarray(rng.standard_normal((k, n)), dtype)
        fn = loop if steps > 1 else jax.jit(lambda a, b: product(a[0], b))
        calls[name] = (lambda fn=fn, a=a, b=b: fn(a, b), _number(m, k, n, steps))
    return calls


def torch_matmul_seconds(shapes: dict, threads: int) -> dict:
    """Seconds per call of each shape, in a child process with ``threads`` threads ({} without
    PyTorch)."""
    from bench_models import torch_child

    return torch_child([__file__, "--torch-child", json.dumps(shapes)], threads, 600) or {}


def _torch_child(shapes: dict, threads: int) -> None:
    import time

    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as XLA's CPU backend (torch_models.py)
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, (m, k, n, steps, *dtype) in shapes.items():
        dtype = getattr(torch, dtype[0] if dtype else "float32")
        a = torch.randn(steps, m, k, generator=gen).to(dtype)
        b = torch.randn(k, n, generator=gen).to(dtype)
        number = _number(m, k, n, steps)

        def call(a=a, b=b):
            return [a[t] @ b for t in range(a.shape[0])]

        call()  # warm up
        start = time.perf_counter()
        for _ in range(number):
            call()
        out[name] = (time.perf_counter() - start) / number
    print(json.dumps(out))


def matmul_rates(shapes: dict, rounds: int) -> dict:
    """Per shape: GFLOP/s [median, min, max] over the rounds for JAX and for PyTorch (the faster
    of 1 and 2 threads in each round), and JAX's time / PyTorch's, round by round."""
    calls = jax_matmul_calls(shapes)
    jax_s = {name: [] for name in shapes}
    torch_s = {name: [] for name in shapes}
    for _ in range(rounds):
        for name, (fn, number) in calls.items():
            jax_s[name].append(time_rounds({name: fn}, repeats=1, number=number)[name][0])
        per_thread = [torch_matmul_seconds(shapes, t) for t in (1, 2)]
        for name in shapes:
            if per_thread[0]:
                torch_s[name].append(min(p[name] for p in per_thread))
    rows = {}
    for name, (m, k, n, steps, *dtype) in shapes.items():
        flops = 2 * m * k * n * steps
        row = {
            "m_k_n_products": [m, k, n, steps],
            "dtype": dtype[0] if dtype else "float32",
            "jax_gflops": spread([flops / s / 1e9 for s in jax_s[name]]),
        }
        if torch_s[name]:
            row["torch_gflops"] = spread([flops / s / 1e9 for s in torch_s[name]])
            row["jax_over_torch_time"] = spread(
                [j / t for j, t in zip(jax_s[name], torch_s[name], strict=True)]
            )
        rows[name] = row
    return rows


# ---------------------------------------------------------------------------------------------
# Models


def model_row(name: str, rounds: int, number: int, peak_gflops: float) -> dict:
    import jax
    from bench_models import Bench, measure

    bench = Bench(name)
    step, args = bench.jitted_step("manual")
    flops = matmul_flops(jax.make_jaxpr(step)(*args))
    row = measure(name, rounds, number, bench)
    seconds = row["seconds_median_min_max"]
    out = {
        "config": row["config"],
        "matmul_gflop_per_step": flops / 1e9,
        "floor_seconds": flops / (peak_gflops * 1e9),
        "gflops_reached_median": {
            k: flops / seconds[k][0] / 1e9
            for k in ("manual", "autodiff", "torch_step")
            if k in seconds
        },
        "measured": row,
    }
    if "torch_step" in seconds:
        out["ceiling_speedup_over_pytorch"] = seconds["torch_step"][0] / out["floor_seconds"]
        out["pytorch_share_of_peak"] = out["floor_seconds"] / seconds["torch_step"][0]
    out["lecturenn_share_of_peak"] = out["floor_seconds"] / seconds["manual"][0]
    return out


def report(name: str, r: dict) -> str:
    text = (
        f"{name:15s} {r['matmul_gflop_per_step']:7.2f} GFLOP/step, floor "
        f"{1e3 * r['floor_seconds']:6.1f} ms, lecturenn at {r['lecturenn_share_of_peak']:.0%} of "
        "peak"
    )
    if "ceiling_speedup_over_pytorch" in r:
        text += (
            f", PyTorch at {r['pytorch_share_of_peak']:.0%}: ceiling "
            f"{r['ceiling_speedup_over_pytorch']:.2f}x PyTorch"
        )
    return text


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--number", type=int, default=5, help="steps per timed call")
    parser.add_argument(
        "--no-models", action="store_true", help="the peak and the kernels only, not the models"
    )
    parser.add_argument(
        "--kernel-dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"]
    )
    parser.add_argument(
        "--out",
        help="benchmarks/results/OUT.json (roofline; with --no-models roofline_kernels, so that "
        "a run without the models never replaces the file that has them)",
    )
    parser.add_argument("--torch-child", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_child:
        _torch_child(json.loads(args.torch_child), args.threads)
        return
    load_before = os.getloadavg()
    peaks = matmul_rates(PEAK, args.rounds)
    for dtype, p in peaks.items():
        best = max(p["jax_gflops"][2], p.get("torch_gflops", [0, 0, 0])[2])
        p["best_gflops"] = best
        print(f"peak {dtype}: {best:.0f} GFLOP/s (JAX median {p['jax_gflops'][0]:.0f})", flush=True)
    peak_gflops = peaks["float32"]["best_gflops"]
    kernels = {}
    for model in (m for m in KERNELS if m in args.only):
        kernels[model] = matmul_rates(in_dtypes(KERNELS[model], args.kernel_dtypes), args.rounds)
        for kname, k in kernels[model].items():
            ratio = k.get("jax_over_torch_time", [math.nan])[0]
            print(f"  {model} {kname:30s} JAX/PyTorch time {ratio:.2f}", flush=True)
    rows = {}
    if not args.no_models:
        rows = each_with_load(
            args.only, lambda n: model_row(n, args.rounds, args.number, peak_gflops), report
        )
    path = write_json(
        args.out or ("roofline_kernels" if args.no_models else "roofline"),
        {
            "benchmark": "matmul_roofline_of_training_steps",
            "machine": machine(),
            "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
            "rounds": args.rounds,
            "peak_gflops": peak_gflops,
            "peak_products": peaks,
            "kernels": kernels,
            "models": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
