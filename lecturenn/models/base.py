"""The contract every model follows, so that training code never needs to know which model it runs.

A model is a namespace of pure functions over pytrees (STYLE §2), closed over its static config:

    params, state = model.init(key)
    loss, (state, aux) = model.loss(params, state, batch, key)            # train mode
    (loss, (state, aux)), grads = model.manual_value_and_grad(params, state, batch, key)
    scores = model.predict(params, state, inputs)                          # eval mode

``state`` holds what is not trained by gradients (batch-norm running statistics); it is ``{}``
for models without such state. ``batch`` is a dict of arrays (for classifiers ``{"x", "y"}``).
``aux`` is a dict of scalar metrics computed on the batch (may be empty).

``jax.value_and_grad(model.loss, has_aux=True)`` and ``model.manual_value_and_grad`` must return
the same loss and gradients with exactly the structure of ``params``: that is what the tests and
``lecturenn gradcheck`` compare.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

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
