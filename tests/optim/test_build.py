"""build_optimizer against the same pipeline assembled by hand from optax parts."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.errors import UserError
from lecturenn.optim import build_optimizer, get_lr_scale, set_lr_scale, weight_mask

STEPS = 30


def _params():
    rng = np.random.default_rng(0)
    return {
        "E": jnp.asarray(rng.normal(size=(10, 3)), jnp.float32),
        "W": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=4), jnp.float32),
    }


def _loss(params):
    # Steep enough that the gradient norm (≈ 20·‖θ‖) is far above the clipping thresholds.
    return 10.0 * sum(jnp.sum((p - 0.5) ** 2) for p in jax.tree.leaves(params))


def _by_hand_fan_in():
    """Collobert's scales for `_params()`: E is a lookup table (1); W and its bias b: 1/3."""
    scales = {"E": 1.0, "W": 1 / 3, "b": 1 / 3}
    return optax.stateless(
        lambda updates, params: jax.tree.map(lambda u, s: u * s, updates, scales)
    )


def _by_hand_l1(l1, mask):
    return optax.stateless(
        lambda updates, params: jax.tree.map(
            lambda u, p, m: u + l1 * jnp.sign(p) if m else u, updates, params, mask
        )
    )


def _run(opt, params):
    @jax.jit
    def run():
        def body(carry, _):
            p, state = carry
            updates, state = opt.update(jax.grad(_loss)(p), state, p)
            return (optax.apply_updates(p, updates), state), None

        (p, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=STEPS)
        return p

    return run()


def _max_abs_diff(a, b):
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in leaves)


def test_adam_with_schedule_clipping_l2_and_fan_in_equals_the_optax_chain():
    params = _params()
    ours = build_optimizer(
        "adam",
        0.05,
        schedule={"kind": "step_decay", "step_size": 10, "factor": 0.5},
        clip_global_norm=1.0,
        l2=1e-2,
        fan_in_scaling=True,
        params=params,
    )
    by_hand = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.add_decayed_weights(1e-2, mask=weight_mask(params)),
        optax.adam(optax.exponential_decay(0.05, 10, 0.5, staircase=True)),
        _by_hand_fan_in(),
    )
    got = _run(ours, params)
    assert _max_abs_diff(got, params) > 1e-2
    assert _max_abs_diff(got, _run(by_hand, params)) <= 1e-6


def test_sgd_with_elementwise_clipping_and_l1_equals_the_optax_chain():
    params = _params()
    ours = build_optimizer("sgd", 0.01, clip_elementwise=0.5, l1=0.1, lr_scale=False)
    by_hand = optax.chain(optax.clip(0.5), _by_hand_l1(0.1, weight_mask(params)), optax.sgd(0.01))
    got = _run(ours, params)
    assert _max_abs_diff(got, params) > 1e-2
    assert _max_abs_diff(got, _run(by_hand, params)) <= 1e-6


def test_optax_optimizers_build_with_the_same_pipeline():
    params = _params()
    ours = build_optimizer("optax:momentum", 0.01, mu=0.8, clip_global_norm=2.0)
    by_hand = optax.chain(optax.clip_by_global_norm(2.0), optax.sgd(0.01, momentum=0.8))
    assert _max_abs_diff(_run(ours, params), _run(by_hand, params)) <= 1e-6


def test_the_loop_halves_the_learning_rate_through_the_state():
    params = _params()
    opt = build_optimizer("momentum", 0.1, clip_global_norm=5.0, l2=1e-3)
    state = opt.init(params)
    assert float(get_lr_scale(state)) == 1.0
    grads = jax.jit(jax.grad(_loss))(params)
    update = jax.jit(opt.update)
    full, _ = update(grads, state, params)
    half, _ = update(grads, set_lr_scale(state, 0.5), params)
    jax.tree.map(lambda f, h: np.testing.assert_allclose(h, 0.5 * f, rtol=1e-6), full, half)
    with pytest.raises(ValueError, match="inject_lr_scale"):
        get_lr_scale(build_optimizer("sgd", 0.1, lr_scale=False).init(params))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"fan_in_scaling": True}, "fan_in_scaling"),
        ({"clip_global_norm": 0.0}, "clip_global_norm"),
        ({"clip_elementwise": -1.0}, "clip_elementwise"),
        ({"l2": -0.1}, "l2"),
        ({"l1": -0.1}, "l1"),
        ({"schedule": {"step_size": 3}}, "kind"),
        ({"schedule": {"kind": "cosine_restarts"}}, "schedule.kind"),
        ({"schedule": {"kind": "exponential", "init_value": 0.5, "k": 0.1}}, "schedule.init_value"),
        ({"schedule": {"kind": "step_decay", "step_size": 0, "factor": 0.5}}, "step_size"),
        ({"beta1": 0.9}, "beta1"),
    ],
)
def test_impossible_settings_are_user_errors_naming_the_key(kwargs, fragment):
    with pytest.raises(UserError) as error:
        build_optimizer("adam", 0.1, **kwargs)
    assert fragment in str(error.value)


def test_a_schedule_is_given_once():
    with pytest.raises(UserError, match="schedule"):
        build_optimizer("sgd", lambda step: 0.1, schedule={"kind": "exponential", "k": 0.1})
    with pytest.raises(UserError, match="learning_rate"):
        build_optimizer("sgd", 0.0)
