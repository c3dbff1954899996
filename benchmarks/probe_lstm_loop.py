"""Where the LSTM's time loop spends what is not matrix products: the character LSTM's forward
loop (100 steps, 64 streams, 512 units) with and without its parts, timed alone in JAX.
(docs/performance.md, "Recurrent LMs and the CNN on a second machine".)

    python benchmarks/probe_lstm_loop.py

The variants, each one jitted ``lax.scan`` over the 100 steps, the cell
``lecturenn.nn.recurrent.lstm_cell`` of ``lstm_forward``:

* ``full``: z_t = zx_t + h_{t-1} W_h, the gates, c_t and h_t, stacking h_t (the layer's loop);
* ``no product``: the same without h_{t-1} W_h (z_t = zx_t + [h_{t-1}]×4);
* ``no product, no input``: also without reading zx_t, the precomputed input projection
  (a constant instead): what the gates and the state update cost on their own;
* ``sigmoid as tanh``: ``no product`` with σ(x) computed as ½ tanh(x/2) + ½, all four gates in
  one tanh over the 4H block.

Prints the median over 5 rounds of 3 calls of the milliseconds a call (``timing.time_calls``, the
variants round-robin); writes nothing.
"""

from __future__ import annotations

from timing import time_calls

from lecturenn.cli import Parser

T, B, H = 100, 64, 512


def calls() -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from lecturenn.nn.recurrent import lstm_cell  # (import lecturenn: its XLA, malloc defaults)

    rng = np.random.default_rng(0)
    zx = jnp.asarray(rng.standard_normal((T, B, 4 * H)), jnp.float32)
    Wh = jnp.asarray(rng.standard_normal((H, 4 * H)) * 0.03, jnp.float32)
    scale = jnp.concatenate([jnp.full(2 * H, 0.5), jnp.ones(H), jnp.full(H, 0.5)])

    def loop(product: bool, read_input: bool, tanh_gates: bool):
        def run(zx, Wh):
            def step(carry, zx_t):
                h, c = carry
                x_part = zx_t if read_input else jnp.full((B, 4 * H), 0.1, zx.dtype)
                z = x_part + (h @ Wh if product else jnp.tile(h, (1, 4)))
                if not tanh_gates:
                    h, c, _ = lstm_cell(z, c)
                    return (h, c), h
                a = jnp.tanh(z * scale) * scale + (1 - scale)
                i, f, g, o = (a[:, k * H : (k + 1) * H] for k in range(4))
                c = f * c + i * g
                h = o * jnp.tanh(c)
                return (h, c), h

            zeros = jnp.zeros((B, H), zx.dtype)
            return lax.scan(step, (zeros, zeros), zx)[1]

        fn = jax.jit(run)
        return lambda: fn(zx, Wh)

    return {
        "full": loop(True, True, False),
        "no product": loop(False, True, False),
        "no product, no input": loop(False, False, False),
        "sigmoid as tanh": loop(False, True, True),
    }


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.parse_args()
    for name, seconds in time_calls(calls(), repeats=5, number=3).items():
        print(f"{name:22s} {1e3 * seconds:7.2f} ms  ({1e6 * seconds / T:6.1f} µs a time step)")


if __name__ == "__main__":
    main()
