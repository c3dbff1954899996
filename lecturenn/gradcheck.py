"""Gradient checking: hand-written backprop vs jax.grad vs centered differences.
(CS224n notes, Snippet 2.1)

    ∂J/∂θᵢ ≈ (J(θ + h eᵢ) − J(θ − h eᵢ)) / 2h

evaluated in float64 for every parameter, leaf by leaf. The error per leaf is the largest
element-wise relative error |a − b| / max(|a|, |b|, floor). The floor keeps entries that are zero
up to rounding from dominating: numeric differences carry ≈ ε·|J|/h ≈ 1e-11 of noise, so they are
compared against a larger floor than the two exact sources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

EXACT_TOL, EXACT_FLOOR = 1e-7, 1e-8  # manual vs jax.grad: both exact up to rounding
NUMERIC_TOL, NUMERIC_FLOOR = 1e-5, 1e-4  # either vs centered differences


def paired_leaves(reference, other):
    """(path, reference leaf, other leaf) for two pytrees of one structure, in leaf order."""
    return (
        (path, r, o)
        for (path, r), o in zip(
            jax.tree_util.tree_leaves_with_path(reference),
            jax.tree_util.tree_leaves(other),
            strict=True,
        )
    )


def relative_error(a, b, floor: float) -> float:
    """max |a − b| / max(|a|, |b|, floor) over all elements."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)))


def max_relative_error(actual, reference) -> float:
    """max |actual − reference| / max |reference|: the error relative to the reference's scale."""
    a, b = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def assert_trees_close(actual, expected, *, tol: float | None = None, rtol=1e-10, atol=0.0):
    """Raise AssertionError unless two pytrees have one structure, one shape per leaf, and close
    values: ``max_relative_error`` ≤ ``tol`` per leaf when ``tol`` is given, else element-wise
    ``np.testing.assert_allclose(rtol, atol)``. For checking a hand-written derivative against
    ``jax.grad`` (or ``jax.vjp``) in a test."""
    if jax.tree_util.tree_structure(actual) != jax.tree_util.tree_structure(expected):
        raise AssertionError(
            f"structures differ: {jax.tree_util.tree_structure(actual)} vs "
            f"{jax.tree_util.tree_structure(expected)}"
        )
    for path, a, b in paired_leaves(actual, expected):
        where = jax.tree_util.keystr(path)
        if np.shape(a) != np.shape(b):
            raise AssertionError(f"{where}: shape {np.shape(a)} vs {np.shape(b)}")
        if tol is None:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=where)
        elif (err := max_relative_error(a, b)) > tol:
            raise AssertionError(f"{where}: relative error {err:.2e} > {tol}")


def numerical_grad(f: Callable, params, h: float = 1e-5, chunk: int = 256):
    """Centered differences of the scalar f at params, for every element of every leaf.

    The perturbed evaluations are batched with vmap, ``chunk`` directions at a time.
    """
    flat, unravel = ravel_pytree(params)
    f_flat = jax.jit(jax.vmap(lambda v: f(unravel(v))))
    n = flat.shape[0]
    out = np.empty(n)
    for start in range(0, n, chunk):
        idx = np.arange(start, min(start + chunk, n))
        eye = jnp.zeros((len(idx), n), flat.dtype).at[np.arange(len(idx)), idx].set(h)
        out[idx] = np.asarray((f_flat(flat + eye) - f_flat(flat - eye)) / (2 * h))
    return unravel(jnp.asarray(out, flat.dtype))


@dataclass
class LeafReport:
    path: str
    shape: tuple
    manual_vs_autodiff: float
    manual_vs_numeric: float
    autodiff_vs_numeric: float

    def ok(self, exact_tol: float, numeric_tol: float) -> bool:
        return (
            self.manual_vs_autodiff <= exact_tol
            and self.manual_vs_numeric <= numeric_tol
            and self.autodiff_vs_numeric <= numeric_tol
        )


def three_way(
    loss_fn: Callable, manual_grad_fn: Callable, params, h: float = 1e-5
) -> list[LeafReport]:
    """Compare manual_grad_fn(params), jax.grad(loss_fn)(params) and centered differences."""
    manual = manual_grad_fn(params)
    autodiff = jax.grad(loss_fn)(params)
    numeric = numerical_grad(loss_fn, params, h)
    if jax.tree_util.tree_structure(manual) != jax.tree_util.tree_structure(autodiff):
        raise AssertionError(
            "manual grads do not have the structure of params: "
            f"{jax.tree_util.tree_structure(manual)} vs "
            f"{jax.tree_util.tree_structure(autodiff)}"
        )
    rows = []
    leaves = jax.tree_util.tree_leaves_with_path(autodiff)
    for (path, a), m, n in zip(
        leaves, jax.tree_util.tree_leaves(manual), jax.tree_util.tree_leaves(numeric), strict=True
    ):
        rows.append(
            LeafReport(
                jax.tree_util.keystr(path),
                tuple(a.shape),
                relative_error(m, a, EXACT_FLOOR),
                relative_error(m, n, NUMERIC_FLOOR),
                relative_error(a, n, NUMERIC_FLOOR),
            )
        )
    return rows


def _float64(tree):
    return jax.tree_util.tree_map(
        lambda x: (
            jnp.asarray(x, jnp.float64) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x
        ),
        tree,
    )


def check_model(model, batch, key, *, h: float = 1e-5, warm_state: bool = False):
    """Three-way check of a Model (models/base.py) on one batch in float64, train mode.

    ``warm_state``: check from the state one forward pass leaves (a recurrent LM's carry, batch
    norm's running statistics) instead of the initial one.
    """
    params, state = model.init(key)
    params, state, batch = _float64((params, state, batch))
    loss_key = jax.random.fold_in(key, 1)
    if warm_state:
        state = _float64(model.loss(params, state, batch, jax.random.fold_in(key, 2))[1][0])

    def loss_fn(p):
        return model.loss(p, state, batch, loss_key)[0]

    def manual_fn(p):
        return model.manual_value_and_grad(p, state, batch, loss_key)[1]

    return three_way(loss_fn, manual_fn, params, h)


def assert_manual_matches_autodiff(
    model, params, state, batch, key, *, tol: float = EXACT_TOL, loss_tol: float = 1e-12
) -> None:
    """Raise AssertionError naming the leaf unless the model's hand-written value_and_grad equals
    ``jax.value_and_grad(model.loss)`` (loss, every gradient leaf, the new state).

    Both run inside one ``jax.jit`` with full optimization, as training runs them: a backward
    pass can be right eagerly and wrong compiled (max-pool once re-tested ``x == max(x)``, and XLA
    recomputed x with other rounding), so the compiled program is the one to check.
    """

    @jax.jit
    def both(p):
        manual = model.manual_value_and_grad(p, state, batch, key)
        autodiff = jax.value_and_grad(model.loss, has_aux=True)(p, state, batch, key)
        return manual, autodiff

    ((loss_m, (state_m, _)), grads_m), ((loss_a, (state_a, _)), grads_a) = both(params)
    if jax.tree_util.tree_structure(grads_m) != jax.tree_util.tree_structure(params):
        raise AssertionError(
            f"manual grads {jax.tree_util.tree_structure(grads_m)} do not have the structure "
            f"of params {jax.tree_util.tree_structure(params)}"
        )
    err = relative_error(loss_m, loss_a, EXACT_FLOOR)
    if err > loss_tol:
        raise AssertionError(f"loss: manual {loss_m} vs jax {loss_a} (relative error {err:.2e})")
    for path, a, m in paired_leaves(grads_a, grads_m):
        err = relative_error(m, a, EXACT_FLOOR) if m.shape == a.shape else np.inf
        if err > tol:
            raise AssertionError(f"{jax.tree_util.keystr(path)}: relative error {err:.2e} > {tol}")
    for path, a, m in paired_leaves(state_a, state_m):
        if not np.allclose(a, m):
            raise AssertionError(f"new state {jax.tree_util.keystr(path)} differs")


def format_table(
    rows: list[LeafReport], exact_tol: float = EXACT_TOL, numeric_tol: float = NUMERIC_TOL
) -> str:
    head = (
        f"{'parameter':<28} {'shape':<14} {'manual~jax':>11} {'manual~num':>11} {'jax~num':>11}  ok"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.path:<28} {str(r.shape):<14} {r.manual_vs_autodiff:11.2e} "
            f"{r.manual_vs_numeric:11.2e} {r.autodiff_vs_numeric:11.2e}  "
            f"{'yes' if r.ok(exact_tol, numeric_tol) else 'NO'}"
        )
    lines.append(
        f"tolerances: manual~jax ≤ {exact_tol:g} (floor {EXACT_FLOOR:g}); "
        f"vs numeric ≤ {numeric_tol:g} (floor {NUMERIC_FLOOR:g})"
    )
    return "\n".join(lines)
