"""Weight-only L1/L2 against jax.grad of the penalties and optax's masked weight decay, and
Collobert's fan-in scaling against fan-ins worked out by hand."""

import jax
import numpy as np
import optax
import pytest

from lecturenn.errors import UserError
from lecturenn.optim import regularize


def _params():
    rng = np.random.default_rng(0)

    def leaf(*shape):
        # Away from 0, where |θ| has no derivative.
        values = rng.uniform(0.2, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        return values

    return {
        "E": leaf(10, 5),
        "hidden": {"W": leaf(25, 6), "b": leaf(6)},
        "lstm": {"Wx": leaf(6, 8), "Wh": leaf(2, 8), "b_gates": leaf(8)},
        "norm": {"gamma": leaf(6), "beta": leaf(6)},
        "out": {"kernel": leaf(3, 3, 6, 4), "bias": leaf(4)},
        "A": leaf(4, 4),
        "layers": [{"W": leaf(6, 6), "b": leaf(6)}],
    }


WEIGHTS = {"E", "hidden.W", "lstm.Wx", "lstm.Wh", "out.kernel", "A", "layers.0.W"}


def _names(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): leaf
        for path, leaf in flat
    }


def test_weight_mask_excludes_biases_and_normalization_parameters():
    mask = _names(regularize.weight_mask(_params()))
    assert {name for name, is_weight in mask.items() if is_weight} == WEIGHTS


def test_add_l2_adds_lambda_theta_to_weights_only_and_is_the_penalty_gradient():
    params = _params()
    grads = jax.tree.map(np.cos, params)
    updates, _ = jax.jit(regularize.add_l2(0.01).update)(grads, optax.EmptyState(), params)
    for name, update in _names(updates).items():
        g, p = _names(grads)[name], _names(params)[name]
        want = g + 0.01 * p if name in WEIGHTS else g
        np.testing.assert_allclose(update, want, rtol=1e-12)
    penalty_grad = jax.jit(jax.grad(regularize.l2_penalty))(params, 0.01)
    added = jax.tree.map(lambda u, g: u - g, updates, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), added, penalty_grad)
    # Independently: optax's weight decay through our mask.
    mask = regularize.weight_mask(params)
    decay = optax.add_decayed_weights(0.01, mask=mask)
    want, _ = jax.jit(decay.update)(grads, decay.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), updates, want)


def test_add_l1_adds_lambda_sign_theta_to_weights_only_and_is_the_penalty_gradient():
    params = _params()
    grads = jax.tree.map(np.zeros_like, params)
    updates, _ = jax.jit(regularize.add_l1(0.1).update)(grads, optax.EmptyState(), params)
    penalty_grad = jax.jit(jax.grad(regularize.l1_penalty))(params, 0.1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), updates, penalty_grad)
    for name, update in _names(updates).items():
        if name not in WEIGHTS:
            assert not np.any(update)


def test_penalties_ignore_biases():
    params = _params()
    moved = jax.tree_util.tree_map_with_path(
        lambda path, p: p if regularize.is_weight(path) else p + 5.0, params
    )
    penalties = jax.jit(lambda p: (regularize.l2_penalty(p, 0.3), regularize.l1_penalty(p, 0.3)))
    assert penalties(moved) == penalties(params)
    weights = [p for name, p in _names(params).items() if name in WEIGHTS]
    l2, l1 = penalties(params)
    np.testing.assert_allclose(float(l2), 0.15 * sum(np.sum(w**2) for w in weights), rtol=1e-12)
    np.testing.assert_allclose(float(l1), 0.3 * sum(np.sum(np.abs(w)) for w in weights), rtol=1e-12)


def test_regularizers_need_params_and_non_negative_strengths():
    with pytest.raises(ValueError, match="params"):
        regularize.add_l2(0.1).update({"W": np.ones(2)}, optax.EmptyState())
    with pytest.raises(UserError, match="l2"):
        regularize.add_l2(-0.1)
    with pytest.raises(UserError, match="l1"):
        regularize.add_l1(-0.1)


def test_fan_in_scales_follow_collobert():
    want = {
        "E": 1.0,  # a lookup table: each row sees one input
        "hidden.W": 1 / 25,
        "hidden.b": 1 / 25,
        "lstm.Wx": 1 / 6,
        "lstm.Wh": 1 / 2,
        "lstm.b_gates": 1 / 8,  # both Wx and Wh feed these 8 units: 6 + 2 inputs
        "norm.gamma": 1.0,  # no weight beside it
        "norm.beta": 1.0,
        "out.kernel": 1 / (3 * 3 * 6),  # HWIO kernel
        "out.bias": 1 / (3 * 3 * 6),
        "A": 1 / 4,
        "layers.0.W": 1 / 6,
        "layers.0.b": 1 / 6,
    }
    assert _names(regularize.fan_in_scales(_params())) == pytest.approx(want)


def test_scale_by_fan_in_multiplies_each_update_by_its_scale():
    params = _params()
    grads = jax.tree.map(np.ones_like, params)
    updates, _ = jax.jit(regularize.scale_by_fan_in(params).update)(grads, optax.EmptyState())
    scales = regularize.fan_in_scales(params)
    jax.tree.map(lambda u, s: np.testing.assert_allclose(u, s, rtol=1e-12), updates, scales)


def test_scale_by_label_scales_only_the_labelled_leaves():
    params = _params()
    grads = jax.tree.map(np.ones_like, params)
    step = regularize.scale_by_label(params, {regularize.EMBEDDING: 0.1})
    updates, _ = jax.jit(step.update)(grads, optax.EmptyState())
    names = _names(updates)
    assert np.allclose(names["E"], 0.1)  # the lookup table (by name: "E")
    assert all(np.allclose(v, 1.0) for k, v in names.items() if k != "E")
