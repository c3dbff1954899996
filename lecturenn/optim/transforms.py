"""Hand-rolled optimizers from the lecture equations, as `optax.GradientTransformation`s.

Each optimizer returns the *updates to add* (`params = optax.apply_updates(params, updates)`), so
ours and optax's are interchangeable and chain with the same clipping and masks. `learning_rate`
is a float or a schedule `step -> lr`; the state counts the updates done so far and the schedule
is read at that count before incrementing it, as optax does (the first update uses `schedule(0)`).

Defaults and the placement of eps are chosen so that each equals its optax counterpart given the
same hyper-parameters (tests/optim/test_transforms.py checks 100 steps against optax 0.2.8).
"""

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lecturenn.errors import UserError

Schedule = Callable[[jax.Array], jax.Array]
ScalarOrSchedule = float | Schedule


def _lr_at(learning_rate: ScalarOrSchedule, count: jax.Array) -> jax.Array:
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _as(value: Any, like: jax.Array) -> jax.Array:
    # Cast scalars to the leaf's dtype so float32 params stay float32 when x64 is on.
    return jnp.asarray(value, dtype=like.dtype)


class CountState(NamedTuple):
    """Number of updates done so far (int32 scalar); the schedule is read at this count."""

    count: jax.Array


def sgd(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    """Plain gradient descent, CS224n: θ ← θ − α ∇θJ. Equals `optax.sgd(learning_rate)`."""

    def init(params):
        del params
        return CountState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        lr = _lr_at(learning_rate, state.count)
        updates = jax.tree.map(lambda g: -_as(lr, g) * g, updates)
        return updates, CountState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


class MomentumState(NamedTuple):
    """`velocity` is the lecture's v (already multiplied by −α, so θ ← θ + v)."""

    count: jax.Array
    velocity: Any


def _momentum(learning_rate: ScalarOrSchedule, mu: float, nesterov: bool):
    def init(params):
        return MomentumState(
            count=jnp.zeros([], jnp.int32), velocity=jax.tree.map(jnp.zeros_like, params)
        )

    def update(updates, state, params=None):
        del params
        lr = _lr_at(learning_rate, state.count)
        velocity = jax.tree.map(
            lambda v, g: _as(mu, v) * v - _as(lr, g) * g, state.velocity, updates
        )
        if nesterov:
            updates = jax.tree.map(lambda v, g: _as(mu, v) * v - _as(lr, g) * g, velocity, updates)
        else:
            updates = velocity
        return updates, MomentumState(count=optax.safe_increment(state.count), velocity=velocity)

    return optax.GradientTransformation(init, update)


def momentum(learning_rate: ScalarOrSchedule, mu: float = 0.9) -> optax.GradientTransformation:
    """Classical momentum, CS224n / CS231n: v ← μv − α∇θJ;  θ ← θ + v.

    With a constant α this equals `optax.sgd(α, momentum=μ)`. Under a schedule the two differ:
    optax keeps t ← g + μt and steps −α_t·t, so a change of α rescales the whole accumulated
    velocity at once, while here v ← μv − α_t g and each gradient keeps the α of its own step.
    """
    return _momentum(learning_rate, mu, nesterov=False)


def nesterov(learning_rate: ScalarOrSchedule, mu: float = 0.9) -> optax.GradientTransformation:
    """Nesterov momentum, CS231n: v ← μv − α∇θJ;  θ ← θ + μv − α∇θJ.

    That step is CS231n's `x += -μ·v_prev + (1+μ)·v` (Sutskever et al. 2013, gradient taken at
    the current θ). With a constant α it equals `optax.sgd(α, momentum=μ, nesterov=True)`; under
    a schedule it differs from optax as `momentum` does.
    """
    return _momentum(learning_rate, mu, nesterov=True)


class AdagradState(NamedTuple):
    count: jax.Array
    sum_of_squares: Any


def adagrad(
    learning_rate: ScalarOrSchedule, initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> optax.GradientTransformation:
    """AdaGrad (Duchi et al. 2011), CS224n: G ← G + g²;  θ ← θ − α g / √(G + ε).

    G starts at `initial_accumulator_value`; ε sits inside the root. Equals `optax.adagrad`.
    """

    def init(params):
        return AdagradState(
            count=jnp.zeros([], jnp.int32),
            sum_of_squares=jax.tree.map(
                lambda p: jnp.full_like(p, initial_accumulator_value), params
            ),
        )

    def update(updates, state, params=None):
        del params
        lr = _lr_at(learning_rate, state.count)
        sum_of_squares = jax.tree.map(lambda G, g: G + g * g, state.sum_of_squares, updates)

        def step(g, G):
            # With ε = 0 an untouched coordinate has G = 0: its step is 0, not 0/0.
            return jnp.where(G > 0, -_as(lr, g) * g / jnp.sqrt(G + _as(eps, G)), 0.0)

        updates = jax.tree.map(step, updates, sum_of_squares)
        return updates, AdagradState(optax.safe_increment(state.count), sum_of_squares)

    return optax.GradientTransformation(init, update)


class RmspropState(NamedTuple):
    count: jax.Array
    mean_square: Any


def rmsprop(
    learning_rate: ScalarOrSchedule, decay: float = 0.9, eps: float = 1e-8
) -> optax.GradientTransformation:
    """RMSProp (Hinton, Coursera lecture 6e): r ← ρr + (1−ρ)g²;  θ ← θ − α g / √(r + ε).

    r starts at 0 and ε sits inside the root. Equals `optax.rmsprop` (not centered, no momentum).
    """

    def init(params):
        return RmspropState(
            count=jnp.zeros([], jnp.int32), mean_square=jax.tree.map(jnp.zeros_like, params)
        )

    def update(updates, state, params=None):
        del params
        lr = _lr_at(learning_rate, state.count)
        mean_square = jax.tree.map(
            lambda r, g: _as(decay, r) * r + _as(1 - decay, g) * g * g,
            state.mean_square,
            updates,
        )
        updates = jax.tree.map(
            lambda g, r: -_as(lr, g) * g / jnp.sqrt(r + _as(eps, r)), updates, mean_square
        )
        return updates, RmspropState(optax.safe_increment(state.count), mean_square)

    return optax.GradientTransformation(init, update)


class AdadeltaState(NamedTuple):
    """E[g²] and E[Δx²] of Zeiler (2012), Algorithm 1."""

    count: jax.Array
    mean_square_grad: Any
    mean_square_delta: Any


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0, rho: float = 0.9, eps: float = 1e-6
) -> optax.GradientTransformation:
    """AdaDelta (Zeiler 2012, Algorithm 1):

    E[g²] ← ρE[g²] + (1−ρ)g²;  Δx = −(√(E[Δx²] + ε) / √(E[g²] + ε)) g;  E[Δx²] ← ρE[Δx²] + (1−ρ)Δx²

    The paper has no learning rate (α = 1). With another α the step is αΔx while E[Δx²] still
    accumulates the unscaled Δx, as optax and PyTorch do. Equals `optax.adadelta(α, ρ, ε)` when α
    is given; note that `optax.adadelta()` with its default `learning_rate=None` returns +Δ
    (gradient *ascent*), so always pass optax a learning rate.
    """

    def init(params):
        return AdadeltaState(
            count=jnp.zeros([], jnp.int32),
            mean_square_grad=jax.tree.map(jnp.zeros_like, params),
            mean_square_delta=jax.tree.map(jnp.zeros_like, params),
        )

    def update(updates, state, params=None):
        del params
        lr = _lr_at(learning_rate, state.count)
        mean_square_grad = jax.tree.map(
            lambda e, g: _as(rho, e) * e + _as(1 - rho, g) * g * g, state.mean_square_grad, updates
        )
        # The descent direction without the minus sign; optax accumulates the same quantity.
        delta = jax.tree.map(
            lambda g, eg, ex: jnp.sqrt(ex + _as(eps, ex)) / jnp.sqrt(eg + _as(eps, eg)) * g,
            updates,
            mean_square_grad,
            state.mean_square_delta,
        )
        mean_square_delta = jax.tree.map(
            lambda e, d: _as(rho, e) * e + _as(1 - rho, d) * d * d, state.mean_square_delta, delta
        )
        updates = jax.tree.map(lambda d: -_as(lr, d) * d, delta)
        new_state = AdadeltaState(
            optax.safe_increment(state.count), mean_square_grad, mean_square_delta
        )
        return updates, new_state

    return optax.GradientTransformation(init, update)


class AdamState(NamedTuple):
    """`count` is t − 1: the number of updates done; `mu`, `nu` are the moments m and v."""

    count: jax.Array
    mu: Any
    nu: Any


def adam(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam (Kingma & Ba 2015, Algorithm 1), bias-corrected:

    m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  m̂ = m / (1−β1ᵗ);  v̂ = v / (1−β2ᵗ);
    θ ← θ − α m̂ / (√v̂ + ε)

    ε sits outside the root, as in the paper. Equals `optax.adam(α, b1, b2, eps)`.
    """

    def init(params):
        return AdamState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(jnp.zeros_like, params),
            nu=jax.tree.map(jnp.zeros_like, params),
        )

    def update(updates, state, params=None):
        del params
        lr = _lr_at(learning_rate, state.count)
        t = optax.safe_increment(state.count)
        mu = jax.tree.map(lambda m, g: _as(b1, m) * m + _as(1 - b1, g) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: _as(b2, v) * v + _as(1 - b2, g) * g * g, state.nu, updates)
        # 1 − βᵗ is computed before the cast: in float32 or lower βᵗ could round to 1.
        correction1 = 1 - b1**t
        correction2 = 1 - b2**t

        def step(m, v):
            m_hat = m / _as(correction1, m)
            v_hat = v / _as(correction2, v)
            return -_as(lr, m) * m_hat / (jnp.sqrt(v_hat) + _as(eps, v))

        return jax.tree.map(step, mu, nu), AdamState(count=t, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adadelta": adadelta,
    "adam": adam,
}


def _optax_counterpart(name: str, kwargs: dict[str, Any]) -> tuple[Callable, dict[str, Any]]:
    """optax's function for "optax:<name>" and our kwargs renamed to optax's."""
    kwargs = dict(kwargs)
    if name in ("momentum", "nesterov"):
        kwargs["momentum"] = kwargs.pop("mu", 0.9)
        if name == "nesterov":
            kwargs["nesterov"] = True
        return optax.sgd, kwargs
    return getattr(optax, name), kwargs


def _optax_optimizer_names() -> list[str]:
    """optax's public optimizers: functions whose first parameter is `learning_rate`."""
    names = []
    for name in dir(optax):
        fn = getattr(optax, name)
        if name.startswith(("_", "scale")) or not inspect.isfunction(fn):
            continue
        if list(inspect.signature(fn).parameters)[:1] == ["learning_rate"]:
            names.append(name)
    return names


def get_optimizer(
    name: str, learning_rate: ScalarOrSchedule, **kwargs: Any
) -> optax.GradientTransformation:
    """An optimizer by name: "adam" is ours, "optax:adam" is `optax.adam` with the same kwargs.

    Our names: sgd, momentum, nesterov, adagrad, rmsprop, adadelta, adam. "optax:momentum" and
    "optax:nesterov" become `optax.sgd(lr, momentum=mu[, nesterov=True])`; "optax:<other>" is any
    optax optimizer (adamw, lamb, ...) called with optax's own kwarg names. The learning rate is
    always passed on, which also keeps "optax:adadelta" from optax's sign-less `None` default.
    """
    if name.startswith("optax:"):
        short = name.removeprefix("optax:")
        if short not in OPTIMIZERS and short not in _optax_optimizer_names():
            raise UserError(
                f"unknown optimizer {name!r}: after 'optax:' give momentum, nesterov or one of "
                f"{', '.join(_optax_optimizer_names())}"
            )
        fn, call_kwargs = _optax_counterpart(short, kwargs)
    elif name in OPTIMIZERS:
        fn, call_kwargs = OPTIMIZERS[name], kwargs
    else:
        raise UserError(
            f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}, "
            f"or 'optax:<name>' for optax's (e.g. 'optax:adam')"
        )
    if name in ("optax:momentum", "optax:nesterov"):
        valid = ["mu"]  # our name for optax.sgd's `momentum`
    else:
        valid = [p for p in inspect.signature(fn).parameters if p != "learning_rate"]
    for key in kwargs:
        if key not in valid:
            raise UserError(
                f"optimizer {name!r} has no option {key!r}; valid options: {', '.join(valid)}"
            )
    return fn(learning_rate, **call_kwargs)
