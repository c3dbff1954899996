"""One optimizer from config values: clipping, weight-only L1/L2, the optimizer with its
schedule behind a loop-controlled learning-rate scale, Collobert's fan-in scaling, and an
optional moving average of the parameters.
"""

import inspect
from typing import Any

import optax

from lecturenn.errors import UserError
from lecturenn.optim import clipping
from lecturenn.optim._concrete import is_concrete
from lecturenn.optim.averaging import average_params
from lecturenn.optim.regularize import EMBEDDING, add_l1, add_l2, scale_by_fan_in, scale_by_label
from lecturenn.optim.schedules import SCHEDULES, Schedule, get_schedule, inject_lr_scale
from lecturenn.optim.transforms import get_optimizer


def schedule_from(schedule: dict[str, Any], learning_rate: float) -> Schedule:
    """The schedule in `schedule`, its first argument (init_value / lr) = `learning_rate`."""
    options = dict(schedule)
    if "kind" not in options:
        raise UserError(f"schedule needs a 'kind' key, one of {', '.join(SCHEDULES)}")
    kind = options.pop("kind")
    if kind not in SCHEDULES:
        raise UserError(f"unknown schedule.kind {kind!r}: use one of {', '.join(SCHEDULES)}")
    first = next(iter(inspect.signature(SCHEDULES[kind]).parameters))
    if first in options and options[first] != learning_rate:
        raise UserError(
            f"schedule.{first} = {options[first]!r} contradicts learning_rate = "
            f"{learning_rate!r}: give the initial rate once, as learning_rate"
        )
    options[first] = learning_rate
    return get_schedule(kind, **options)


def _check_positive(key: str, value: float | None) -> None:
    if is_concrete(value) and not value > 0:
        raise UserError(f"{key} must be > 0 (or left out to disable it), got {value!r}")


def build_optimizer(
    name: str,
    learning_rate: float | Schedule,
    *,
    schedule: dict[str, Any] | None = None,
    clip_global_norm: float | None = None,
    clip_elementwise: float | None = None,
    l1: float = 0.0,
    l2: float = 0.0,
    fan_in_scaling: bool = False,
    embedding_lr_scale: float = 1.0,
    average_decay: float = 0.0,
    params: Any = None,
    labels: Any = None,
    lr_scale: bool = True,
    **optimizer_kwargs: Any,
) -> optax.GradientTransformation:
    """chain(clip by global norm, clip elementwise, add_l2, add_l1 (weights only),
    inject_lr_scale(optimizer(learning rate or schedule)), scale_by_fan_in, the lookup tables'
    own rate scale), inside ``average_params`` when ``average_decay`` > 0 (optim/averaging.py).

    Clipping acts on the raw loss gradient, before the penalty terms are added. `schedule` is
    a dict such as {"kind": "step_decay", "step_size": 1000, "factor": 0.5}; its initial value is
    `learning_rate`. With `lr_scale` the loop can halve the rate via `set_lr_scale`.
    `name` and `optimizer_kwargs` go to `get_optimizer` ("adam" is ours, "optax:adam" optax's).
    `labels`: what each leaf of the params is (optim/regularize.py; default: read off the keys).
    """
    if schedule is not None:
        if callable(learning_rate):
            raise UserError(
                "learning_rate is already a schedule: give either a schedule function as "
                "learning_rate or a schedule dict, not both"
            )
        learning_rate = schedule_from(schedule, learning_rate)
    elif is_concrete(learning_rate) and not learning_rate > 0:
        raise UserError(f"learning_rate must be > 0, got {learning_rate!r}")
    _check_positive("clip_global_norm", clip_global_norm)
    _check_positive("clip_elementwise", clip_elementwise)
    for key, value in (("l1", l1), ("l2", l2)):
        if is_concrete(value) and value < 0:
            raise UserError(f"{key} must be >= 0, got {value!r}")
    if fan_in_scaling and params is None:
        raise UserError("fan_in_scaling = true needs the model's params to read the fan-ins")
    if embedding_lr_scale != 1.0 and params is None:
        raise UserError("embedding_lr_scale needs the model's params to find its lookup tables")
    _check_positive("embedding_lr_scale", embedding_lr_scale)
    if is_concrete(average_decay) and not 0 <= average_decay < 1:
        raise UserError(f"average_decay must be in [0, 1) (0: no averaging), got {average_decay!r}")

    parts = []
    if clip_global_norm is not None:
        parts.append(clipping.clip_by_global_norm(clip_global_norm))
    if clip_elementwise is not None:
        parts.append(clipping.clip_elementwise(clip_elementwise))
    # a traced strength (a vmapped sweep over l2) always gets its term; a number only when > 0
    if not is_concrete(l2) or l2 > 0:
        parts.append(add_l2(l2, labels))
    if not is_concrete(l1) or l1 > 0:
        parts.append(add_l1(l1, labels))
    optimizer = get_optimizer(name, learning_rate, **optimizer_kwargs)
    parts.append(inject_lr_scale(optimizer) if lr_scale else optimizer)
    if fan_in_scaling:
        parts.append(scale_by_fan_in(params, labels))
    if embedding_lr_scale != 1.0:
        parts.append(scale_by_label(params, {EMBEDDING: embedding_lr_scale}, labels))
    chained = optax.chain(*parts)
    if not is_concrete(average_decay) or average_decay > 0:
        return average_params(chained, average_decay)
    return chained
