"""``lecturenn gradcheck CONFIG``: hand-written gradients of a config's model against ``jax.grad``
and centered differences, on a small float64 instance of the same model.

The model module's ``toy(cfg)`` shrinks the sizes (vocabulary, hidden units, channels, image) but
keeps every structural choice of the config — cell, depth, dropout, batch norm, SLL or max-margin
scoring, weight tying, pooling, direct connections — and ``example_batch`` draws a random batch
for it. The check runs in train mode from the state the model reaches after one forward pass
(a language model's carried recurrent state, a batch-normalized model's running statistics), so
BPTT from a non-zero state is checked too.
"""

from __future__ import annotations

import jax

from lecturenn import gradcheck
from lecturenn.experiments import schemas


def toy_check(cfg, *, seed: int = 0, h: float = 1e-5) -> list[gradcheck.LeafReport]:
    """Three-way report (manual vs jax.grad vs numeric) of the config's model, leaf by leaf."""
    module = schemas.MODELS[schemas.kind_of(cfg.model)].module
    toy = module.toy(cfg.model)
    model = module.make(toy)
    key = jax.random.PRNGKey(seed)
    batch = module.example_batch(toy, jax.random.fold_in(key, 7))
    return gradcheck.check_model(model, batch, key, h=h, warm_state=True)
