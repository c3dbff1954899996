"""Hand-rolled optimizers against optax 0.2.8 and against the lecture recurrences."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.errors import UserError
from lecturenn.optim import transforms as ours

STEPS = 100


def _params(dtype=np.float32):
    rng = np.random.default_rng(0)
    return {
        "W": jnp.asarray(rng.normal(size=(4, 3)), dtype),
        "b": jnp.asarray(rng.normal(size=3), dtype),
    }


def _random_grads(dtype=np.float32):
    """STEPS gradients, stacked on a leading axis, from a fixed seed."""
    rng = np.random.default_rng(1)
    return {
        "W": jnp.asarray(rng.normal(size=(STEPS, 4, 3)), dtype),
        "b": jnp.asarray(rng.normal(size=(STEPS, 3)), dtype),
    }


def _quadratic_loss(params):
    """A bowl ½ Σ c (θ − θ*)², c in [0.5, 2], its minimum 3 away from `_params()` on every axis.

    The far minimum keeps RMSProp (ε = 1e-8) away from it for 100 steps: near a minimum its step
    ±α·g/√r amplifies the float32 cancellation in g, and no two implementations would agree.
    """

    def bowl(theta, start):
        curvature = jnp.linspace(0.5, 2.0, theta.size, dtype=theta.dtype).reshape(theta.shape)
        return 0.5 * jnp.sum(curvature * (theta - start - 3.0) ** 2)

    start = _params(params["W"].dtype)
    return sum(bowl(params[k], start[k]) for k in ("W", "b"))


def _run_on_sequence(opt, params, grads):
    def body(carry, g):
        p, state = carry
        updates, state = opt.update(g, state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), grads)
    return params


def _run_on_quadratic(opt, params):
    def body(carry, _):
        p, state = carry
        updates, state = opt.update(jax.grad(_quadratic_loss)(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=STEPS)
    return params


def _max_abs_diff(a, b):
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in leaves)


# Each case: (ours, optax's, learning rate, whether the quadratic run uses a schedule).
# Hyper-parameters are non-default, with a large eps so that a misplaced eps would show (the
# defaults are checked against optax's signatures below). Learning rates keep the parameters
# O(1), where float32 resolves 1e-6. Momentum and Nesterov equal optax only at a constant rate.
CASES = {
    "sgd": (lambda lr: ours.sgd(lr), lambda lr: optax.sgd(lr), 0.1, True),
    "momentum": (lambda lr: ours.momentum(lr), lambda lr: optax.sgd(lr, momentum=0.9), 0.01, False),
    "nesterov": (
        lambda lr: ours.nesterov(lr, mu=0.5),
        lambda lr: optax.sgd(lr, momentum=0.5, nesterov=True),
        0.01,
        False,
    ),
    "adagrad": (
        lambda lr: ours.adagrad(lr, initial_accumulator_value=0.5, eps=0.3),
        lambda lr: optax.adagrad(lr, initial_accumulator_value=0.5, eps=0.3),
        0.1,
        True,
    ),
    "rmsprop": (
        lambda lr: ours.rmsprop(lr, decay=0.8, eps=0.1),
        lambda lr: optax.rmsprop(lr, decay=0.8, eps=0.1),
        0.01,
        True,
    ),
    "adadelta": (
        lambda lr: ours.adadelta(lr, rho=0.7, eps=0.05),
        lambda lr: optax.adadelta(lr, rho=0.7, eps=0.05),
        0.5,
        True,
    ),
    "adam": (
        lambda lr: ours.adam(lr, b1=0.5, b2=0.9, eps=0.1),
        lambda lr: optax.adam(lr, b1=0.5, b2=0.9, eps=0.1),
        0.01,
        True,
    ),
}


# Largest |ours − optax| / max(1, |optax|) allowed after 100 steps: float64 shows that the
# equations are the same; in float32 an equal formula computed in another order may round
# differently at each step (adadelta: ≈ 3.5 ulps of 3.47 after 100 steps on an AVX-512 Xeon).
REL_TOL = {"float32": 1e-6, "float64": 1e-12}


def _max_rel_diff(got, want):
    leaves = zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / np.maximum(1.0, np.abs(y))))
        for x, y in leaves
    )


@pytest.mark.parametrize("dtype", list(REL_TOL))
@pytest.mark.parametrize("case", list(CASES))
def test_matches_optax_for_100_steps(case, dtype):
    """Same random gradient sequence, then an actual quadratic (gradients depend on params)."""
    make_ours, make_optax, lr, schedule_on_quadratic = CASES[case]
    quad_lr = optax.exponential_decay(lr, 10, 0.7) if schedule_on_quadratic else lr
    params, grads = _params(np.dtype(dtype)), _random_grads(np.dtype(dtype))

    @jax.jit
    def run_all():
        got_quad = _run_on_quadratic(make_ours(quad_lr), params)
        return (
            _run_on_sequence(make_ours(lr), params, grads),
            _run_on_sequence(make_optax(lr), params, grads),
            got_quad,
            _run_on_quadratic(make_optax(quad_lr), params),
            _quadratic_loss(params),
            _quadratic_loss(got_quad),
        )

    got_seq, want_seq, got_quad, want_quad, loss_before, loss_after = run_all()
    assert got_seq["W"].dtype == got_quad["W"].dtype == np.dtype(dtype)
    assert _max_abs_diff(got_seq, params) > 1e-2  # the optimizer did move the parameters
    assert loss_after < 0.95 * loss_before
    assert _max_rel_diff(got_seq, want_seq) <= REL_TOL[dtype]
    assert _max_rel_diff(got_quad, want_quad) <= REL_TOL[dtype]


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adadelta", "adam"])
def test_defaults_equal_optax_defaults(name):
    """With equal defaults, the non-default runs above cover the default optimizers too."""
    ours_defaults = {
        key: p.default
        for key, p in inspect.signature(getattr(ours, name)).parameters.items()
        if p.default is not p.empty and key != "learning_rate"
    }
    optax_parameters = inspect.signature(getattr(optax, name)).parameters
    assert ours_defaults
    for key, value in ours_defaults.items():
        assert optax_parameters[key].default == value, key


def _lecture_momentum(params, grads, schedule, mu, nesterov):
    """CS231n in float64 numpy: v ← μv − α_t g; x += v, or x += −μ·v_prev + (1+μ)·v."""
    x = {k: np.array(v, np.float64) for k, v in params.items()}
    v = {k: np.zeros_like(a) for k, a in x.items()}
    for t in range(STEPS):
        lr = float(schedule(t))
        for k in x:
            v_prev = v[k]
            v[k] = mu * v[k] - lr * np.asarray(grads[k][t], np.float64)
            x[k] = x[k] + (-mu * v_prev + (1 + mu) * v[k] if nesterov else v[k])
    return x


@pytest.mark.parametrize("use_nesterov", [False, True])
def test_momentum_follows_the_lecture_recurrence_under_a_schedule(use_nesterov):
    # Powers of two, so that float(schedule(t)) in numpy equals the traced value exactly.
    schedule = lambda step: 0.125 * 0.5 ** (step // 5)
    params, grads = _params(np.float64), _random_grads(np.float64)
    make = ours.nesterov if use_nesterov else ours.momentum
    got = _run_on_sequence(make(schedule, mu=0.9), params, grads)
    want = _lecture_momentum(params, grads, schedule, 0.9, use_nesterov)
    assert _max_abs_diff(got, want) <= 1e-12
    # optax's trace form rescales the whole accumulated velocity by α_t, so it differs.
    optax_form = _run_on_sequence(
        optax.sgd(schedule, momentum=0.9, nesterov=use_nesterov), params, grads
    )
    assert _max_abs_diff(optax_form, want) > 1e-3


def test_get_optimizer_gives_ours_and_optax_by_name():
    params, grads = _params(), _random_grads()
    ours_adam = ours.get_optimizer("adam", 0.01, b1=0.8)
    assert isinstance(ours_adam.init(params), ours.AdamState)
    optax_adam = ours.get_optimizer("optax:adam", 0.01, b1=0.8)
    want = _run_on_sequence(optax.adam(0.01, b1=0.8), params, grads)
    assert _max_abs_diff(_run_on_sequence(optax_adam, params, grads), want) == 0.0
    assert _max_abs_diff(_run_on_sequence(ours_adam, params, grads), want) <= 1e-6


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_get_optimizer_maps_mu_to_optax_momentum(name):
    params, grads = _params(), _random_grads()
    got = _run_on_sequence(ours.get_optimizer(f"optax:{name}", 0.05, mu=0.5), params, grads)
    want = _run_on_sequence(
        optax.sgd(0.05, momentum=0.5, nesterov=name == "nesterov"), params, grads
    )
    assert _max_abs_diff(got, want) == 0.0


def test_get_optimizer_passes_other_optax_optimizers_through():
    params, grads = _params(), _random_grads()
    got = _run_on_sequence(ours.get_optimizer("optax:adamw", 0.01, weight_decay=0.1), params, grads)
    want = _run_on_sequence(optax.adamw(0.01, weight_decay=0.1), params, grads)
    assert _max_abs_diff(got, want) == 0.0


@pytest.mark.parametrize(
    ("name", "kwargs", "fragments"),
    [
        ("adamm", {}, ["'adamm'", "adam", "rmsprop", "optax:"]),
        ("optax:adamm", {}, ["'optax:adamm'", "adamw"]),
        ("adam", {"beta1": 0.9}, ["'beta1'", "b1", "eps"]),
        ("optax:momentum", {"momentum": 0.9}, ["'momentum'", "mu"]),
    ],
)
def test_get_optimizer_rejects_unknown_names_and_options(name, kwargs, fragments):
    with pytest.raises(UserError) as error:
        ours.get_optimizer(name, 0.1, **kwargs)
    for fragment in fragments:
        assert fragment in str(error.value)
