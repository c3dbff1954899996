"""The contract every model follows, so that training code never needs to know which model it runs.

A model module declares one frozen config dataclass and pure functions of it, at module level:

    params, state = init(cfg, key)
    loss, (state, aux) = loss(cfg, params, state, batch, key)                 # train mode
    (loss, (state, aux)), grads = manual_value_and_grad(cfg, params, state, batch, key)
    scores = predict(cfg, params, state, inputs)                              # eval mode

and ``make(cfg) -> Model`` binds them to the config: a namespace of pure functions over pytrees
(``model.init(key)``, ``model.loss(params, state, batch, key)``, ...), which is all that training
code sees. ``state`` holds what is not trained by gradients (batch-norm running statistics, the
recurrent state carried between windows); it is ``{}`` for models without such state. ``batch``
is a dict of arrays whose leading axis indexes examples (for classifiers ``{"x", "y"}``). ``aux``
is a dict of scalar metrics computed on the batch (may be empty).

``jax.value_and_grad(model.loss, has_aux=True)`` and ``model.manual_value_and_grad`` must return
the same loss and gradients with exactly the structure of ``params``: that is what the tests and
``lecturenn gradcheck`` compare.

The config dataclass is also what ``[model]`` in a TOML config fills: every field is declared once,
with :func:`setting`, which records its one-line meaning and whether the field comes from the data
(vocabulary size, number of classes, a pretrained table: filled by the task, never by the user).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

from lecturenn.nn.layers import is_number
from lecturenn.optim.regularize import labels_by_name

Params = Any
State = Any
Batch = dict


class Model(NamedTuple):
    name: str
    init: Callable[..., tuple[Params, State]]
    loss: Callable[..., tuple[Any, tuple[State, dict]]]
    manual_value_and_grad: Callable[..., tuple[tuple[Any, tuple[State, dict]], Params]]
    predict: Callable[..., Any]
    # optional: (params, state, x) -> list of each hidden layer's activations, eval mode; used by
    # experiments/diagnostics.py for saturation histograms
    hidden_activations: Callable[..., list] | None = None
    # optional: params -> a pytree of the same structure with one label per leaf (weight, bias,
    # embedding, norm: optim/regularize.py); None: the leaves are labelled by their names
    labels: Callable[[Params], Any] | None = None


def bind(name: str, cfg: Any, init, loss, manual_value_and_grad, predict, **optional) -> Model:
    """A ``Model`` of a model module's functions with ``cfg`` bound as their first argument
    (``optional``: ``hidden_activations`` takes it too; ``labels`` does not)."""
    import functools

    bound = [functools.partial(f, cfg) for f in (init, loss, manual_value_and_grad, predict)]
    extras = {
        key: functools.partial(f, cfg) if key == "hidden_activations" else f
        for key, f in optional.items()
    }
    return Model(name, *bound, **extras)


def setting(
    default: Any = None, help: str = "", *, data: bool = False, traced: bool = False, **field_args
):
    """A config field with its one-line meaning.

    ``data=True``: the task fills the field from the data set (the user may not set it).
    ``traced=True``: the value enters the computation only as a number (a dropout rate, a loss
    weight), so trials of a sweep that differ in it can share one vmapped program: the model must
    not branch in Python on it (see ``nn.layers.dropout_active``). ``field_args`` go to
    ``dataclasses.field``.
    """
    metadata = {"help": help, "data": data, "traced": traced}
    if isinstance(default, (dict, list)):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata=metadata, **field_args
        )
    return dataclasses.field(default=default, metadata=metadata, **field_args)


def check_rate(cfg: Any, *names: str) -> None:
    """Dropout-like rates must lie in [0, 1) (checked on numbers only)."""
    from lecturenn.errors import UserError

    for name in names:
        value = getattr(cfg, name)
        if is_number(value) and not 0.0 <= value < 1.0:
            raise UserError(f"model.{name} must be in [0, 1), got {value}")


def check_positive(cfg: Any, *names: str) -> None:
    """Sizes (ints, or tuples of ints) must be >= 1."""
    from lecturenn.errors import UserError

    for name in names:
        value = getattr(cfg, name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UserError(
                    f"model.{name} must be a positive integer (or list of them), got {value!r}"
                )


def user_fields(cls) -> list[dataclasses.Field]:
    """The fields a user sets in ``[model]`` (all but the ones filled from the data)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("data")]


def data_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("data")]


def label_by_name(params: Params, embeddings: tuple[str, ...] = ()) -> Any:
    """Labels for a params dict from its keys, with the keys in ``embeddings`` (anywhere on a
    leaf's path) marking lookup tables: "b"/"b_*" biases, "gamma"/"beta" batch norm's, the rest
    weights (optim/regularize.py's rule)."""
    return labels_by_name(params, embeddings)
