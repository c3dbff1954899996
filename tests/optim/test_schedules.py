"""Schedules against their closed forms, and the loop-controlled learning-rate scale."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.errors import UserError
from lecturenn.optim import schedules
from lecturenn.optim.transforms import adam, sgd

STEPS = np.arange(0, 400)


def _check(schedule, formula):
    """The schedule, jitted on a traced int32 array and called on Python ints, = the formula."""
    want = np.array([formula(int(t)) for t in STEPS])
    traced = jax.jit(schedule)(jnp.asarray(STEPS, jnp.int32))
    np.testing.assert_allclose(np.asarray(traced), want, rtol=1e-6)
    for t in (0, 1, 37, 399):
        np.testing.assert_allclose(float(schedule(t)), want[t], rtol=1e-12)


def test_constant():
    _check(schedules.constant(0.3), lambda t: 0.3)


def test_step_decay_is_a0_times_factor_to_the_floor_of_t_over_step_size():
    _check(schedules.step_decay(0.2, 30, 0.5), lambda t: 0.2 * 0.5 ** math.floor(t / 30))
    # Independently: optax's staircase exponential decay is the same schedule.
    optax_form = optax.exponential_decay(0.2, transition_steps=30, decay_rate=0.5, staircase=True)
    np.testing.assert_allclose(
        np.asarray(schedules.step_decay(0.2, 30, 0.5)(STEPS)),
        np.asarray(optax_form(STEPS)),
        rtol=1e-6,
    )


def test_exponential_is_a0_times_e_to_the_minus_kt():
    _check(schedules.exponential(0.1, 0.01), lambda t: 0.1 * math.exp(-0.01 * t))


def test_inverse_time_is_a0_tau_over_max_t_tau():
    _check(schedules.inverse_time(0.1, 50), lambda t: 0.1 * 50 / max(t, 50))


def test_one_over_t_is_a0_over_one_plus_kt():
    _check(schedules.one_over_t(0.1, 0.05), lambda t: 0.1 / (1 + 0.05 * t))


def test_cosine_falls_from_a0_to_alpha_a0_over_decay_steps_then_holds():
    def formula(t):
        return 0.3 * (0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 250) / 250)) + 0.1)

    _check(schedules.cosine(0.3, 250, alpha=0.1), formula)
    # Independently: optax's cosine decay is the same schedule.
    np.testing.assert_allclose(
        np.asarray(schedules.cosine(0.3, 250, alpha=0.1)(STEPS)),
        np.asarray(optax.cosine_decay_schedule(0.3, 250, alpha=0.1)(STEPS)),
        rtol=1e-5,
    )


def test_warmup_ramps_linearly_then_holds():
    _check(schedules.warmup(0.4, 20), lambda t: 0.4 * min(t + 1, 20) / 20)


def test_warmup_then_hands_over_to_another_schedule_started_at_zero():
    then = schedules.exponential(0.4, 0.02)
    _check(
        schedules.warmup(0.4, 20, then=then),
        lambda t: 0.4 * (t + 1) / 20 if t < 20 else 0.4 * math.exp(-0.02 * (t - 20)),
    )


def test_piecewise_epoch_decay_follows_zaremba():
    # Zaremba's small LSTM (TensorFlow PTB tutorial form): lr * decay ** max(i + 1 - max_epoch, 0)
    # for 0-based epoch i, max_epoch = 4, decay = 0.5.
    steps_per_epoch = 13
    _check(
        schedules.piecewise_epoch_decay(1.0, steps_per_epoch, 4, 0.5),
        lambda t: 1.0 * 0.5 ** max(t // steps_per_epoch + 1 - 4, 0),
    )
    values = schedules.piecewise_epoch_decay(1.0, steps_per_epoch, 4, 0.5)
    epoch_rates = [float(values(epoch * steps_per_epoch)) for epoch in range(7)]
    assert epoch_rates == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]


def test_get_schedule_builds_by_name_including_a_nested_then():
    built = schedules.get_schedule(
        "warmup",
        init_value=0.4,
        warmup_steps=20,
        then={"kind": "inverse_time", "init_value": 0.4, "tau": 10},
    )
    direct = schedules.warmup(0.4, 20, then=schedules.inverse_time(0.4, 10))
    np.testing.assert_array_equal(np.asarray(built(STEPS)), np.asarray(direct(STEPS)))


@pytest.mark.parametrize(
    ("kind", "kwargs", "fragments"),
    [
        ("cosine_restarts", {}, ["'cosine_restarts'", "step_decay", "cosine"]),
        ("cosine", {"init_value": 0.1, "decay_steps": 0}, ["decay_steps", "> 0"]),
        ("step_decay", {"init_value": 0.1, "step": 10, "factor": 0.5}, ["'step'", "step_size"]),
        ("step_decay", {"init_value": 0.1, "factor": 0.5}, ["'step_size'"]),
        ("inverse_time", {"init_value": 0.1, "tau": 0}, ["tau", "> 0"]),
        ("warmup", {"init_value": 0.1, "warmup_steps": 5, "then": {"tau": 3}}, ["then", "kind"]),
    ],
)
def test_get_schedule_rejects_bad_kinds_and_options(kind, kwargs, fragments):
    with pytest.raises(UserError) as error:
        schedules.get_schedule(kind, **kwargs)
    for fragment in fragments:
        assert fragment in str(error.value)


def _params():
    rng = np.random.default_rng(0)
    return {"W": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2, jnp.float32)}


def _grads():
    rng = np.random.default_rng(1)
    return {"W": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.ones(2, jnp.float32)}


@pytest.mark.parametrize("make", [lambda: sgd(0.1), lambda: adam(0.01)])
def test_halving_lr_scale_halves_the_updates(make):
    opt = schedules.inject_lr_scale(make())
    params, grads = _params(), _grads()
    state = opt.init(params)
    assert float(schedules.get_lr_scale(state)) == 1.0
    update = jax.jit(opt.update)
    full, next_state = update(grads, state, params)
    half, half_state = update(grads, schedules.set_lr_scale(state, 0.5), params)
    for f, h in zip(jax.tree.leaves(full), jax.tree.leaves(half), strict=True):
        np.testing.assert_allclose(np.asarray(h), 0.5 * np.asarray(f), rtol=1e-7)
    # The scale leaves the inner optimizer's state alone.
    same = jax.tree.map(np.array_equal, next_state.inner_state, half_state.inner_state)
    assert all(jax.tree.leaves(same))
    # And the unscaled updates equal the bare optimizer's.
    bare_opt = make()
    bare, _ = jax.jit(bare_opt.update)(grads, bare_opt.init(params), params)
    for f, b in zip(jax.tree.leaves(full), jax.tree.leaves(bare), strict=True):
        np.testing.assert_array_equal(np.asarray(f), np.asarray(b))


def test_lr_scale_is_found_in_a_chained_state_and_set_under_jit():
    opt = optax.chain(optax.clip_by_global_norm(1.0), schedules.inject_lr_scale(sgd(0.1)))
    state = opt.init(_params())
    halved = jax.jit(lambda s, v: schedules.set_lr_scale(s, v))(state, 0.5)
    scale = schedules.get_lr_scale(halved)
    assert scale.dtype == jnp.float32 and scale.shape == ()
    assert float(scale) == 0.5
    assert jax.tree.structure(halved) == jax.tree.structure(state)


def test_lr_scale_keeps_the_leading_axis_of_a_vmapped_state():
    opt = schedules.inject_lr_scale(sgd(0.1))
    states = jax.vmap(opt.init)(jax.tree.map(lambda p: jnp.stack([p, p, p]), _params()))
    halved = schedules.set_lr_scale(states, 0.5)
    assert schedules.get_lr_scale(halved).shape == (3,)
    per_seed = schedules.set_lr_scale(states, jnp.array([1.0, 0.5, 0.25]))
    np.testing.assert_array_equal(np.asarray(schedules.get_lr_scale(per_seed)), [1.0, 0.5, 0.25])


def test_lr_scale_helpers_say_when_there_is_no_scale():
    state = sgd(0.1).init(_params())
    with pytest.raises(ValueError, match="inject_lr_scale"):
        schedules.set_lr_scale(state, 0.5)
    with pytest.raises(ValueError, match="inject_lr_scale"):
        schedules.get_lr_scale(state)
