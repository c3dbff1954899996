"""Gradient clipping against numpy and optax."""

import jax
import numpy as np
import optax
import pytest

from lecturenn.errors import UserError
from lecturenn.optim import clipping


def _grads(scale):
    rng = np.random.default_rng(0)
    return {
        "W": scale * rng.normal(size=(4, 3)).astype(np.float32),
        "layers": [{"b": scale * rng.normal(size=3).astype(np.float32)}],
    }


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(tree)])


def test_global_norm_is_the_norm_of_all_leaves_as_one_vector():
    grads = _grads(1.0)
    np.testing.assert_allclose(
        float(clipping.global_norm(grads)), np.linalg.norm(_flat(grads)), rtol=1e-6
    )


def test_clip_by_global_norm_rescales_to_the_threshold_and_keeps_the_direction():
    grads = _grads(10.0)
    assert np.linalg.norm(_flat(grads)) > 5.0
    clipped, _ = jax.jit(clipping.clip_by_global_norm(5.0).update)(grads, optax.EmptyState())
    np.testing.assert_allclose(np.linalg.norm(_flat(clipped)), 5.0, rtol=1e-6)
    direction = _flat(grads) / np.linalg.norm(_flat(grads))
    np.testing.assert_allclose(_flat(clipped), 5.0 * direction, rtol=1e-5)
    want, _ = optax.clip_by_global_norm(5.0).update(grads, optax.EmptyState())
    np.testing.assert_allclose(_flat(clipped), _flat(want), rtol=1e-6)


def test_clip_by_global_norm_leaves_small_gradients_unchanged():
    grads = _grads(0.1)
    assert np.linalg.norm(_flat(grads)) < 5.0
    clipped, _ = clipping.clip_by_global_norm(5.0).update(grads, optax.EmptyState())
    np.testing.assert_array_equal(_flat(clipped), _flat(grads))


def test_clip_elementwise_bounds_each_component():
    grads = _grads(3.0)
    clipped, _ = clipping.clip_elementwise(1.5).update(grads, optax.EmptyState())
    np.testing.assert_array_equal(_flat(clipped), np.clip(_flat(grads), -1.5, 1.5))
    assert np.abs(_flat(grads)).max() > 1.5 and np.abs(_flat(clipped)).max() == np.float32(1.5)
    assert clipped["W"].dtype == np.float32


def test_clipping_chains_with_optax_and_our_optimizers():
    from lecturenn.optim.transforms import sgd

    grads = _grads(10.0)
    params = jax.tree.map(np.zeros_like, grads)
    opt = optax.chain(clipping.clip_by_global_norm(1.0), sgd(0.5))
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(np.linalg.norm(_flat(updates)), 0.5, rtol=1e-6)


@pytest.mark.parametrize("make", [clipping.clip_by_global_norm, clipping.clip_elementwise])
@pytest.mark.parametrize("threshold", [0.0, -1.0])
def test_non_positive_thresholds_are_user_errors(make, threshold):
    with pytest.raises(UserError, match="> 0"):
        make(threshold)
