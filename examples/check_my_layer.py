"""Write your own layer as a forward/backward pair and check its hand-written derivative against
``jax.grad`` and centered differences — the gradient check of CS224n's notes (Snippet 2.1).

The layer here is a *maxout* unit (Goodfellow et al. 2013): z = x W + b gives k candidate values
per unit, and the unit's output is the largest, y_j = max_i z_{j,i}. Its backward routes δ to the
candidate that won, as max-pooling does.

    python examples/check_my_layer.py
"""

import jax
import jax.numpy as jnp

from lecturenn import gradcheck
from lecturenn.nn import layers, losses

jax.config.update("jax_enable_x64", True)  # the check compares to ~1e-10: float64
UNITS, PIECES = 4, 3


def maxout_forward(params, x):
    z, affine_cache = layers.affine_forward(params, x)  # (N, UNITS · PIECES)
    z = z.reshape(x.shape[0], UNITS, PIECES)
    winner = jnp.argmax(z, axis=-1)
    return jnp.max(z, axis=-1), (affine_cache, winner)


def maxout_backward(params, cache, dy):
    affine_cache, winner = cache
    dz = jax.nn.one_hot(winner, PIECES, dtype=dy.dtype) * dy[..., None]  # δ to the winner
    return layers.affine_backward(params, affine_cache, dz.reshape(dy.shape[0], -1))


def main() -> bool:
    kx, kw, ky = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (8, 5), jnp.float64)
    y = jax.random.randint(ky, (8,), 0, UNITS)
    params = {"W": jax.random.normal(kw, (5, UNITS * PIECES), jnp.float64), "b": jnp.zeros(12)}

    def loss(p):  # softmax cross-entropy over the maxout units' outputs
        return losses.softmax_cross_entropy(maxout_forward(p, x)[0], y)

    def manual_grad(p):
        out, cache = maxout_forward(p, x)
        _, dout = losses.softmax_cross_entropy_value_and_grad(out, y)
        return maxout_backward(p, cache, dout)[0]

    rows = gradcheck.three_way(loss, manual_grad, params)
    print(gradcheck.format_table(rows))
    ok = all(r.ok(gradcheck.EXACT_TOL, gradcheck.NUMERIC_TOL) for r in rows)
    print("all gradients agree" if ok else "MISMATCH")
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
