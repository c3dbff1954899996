"""Many trials of one model trained as one vmapped program, epoch by epoch.

Trials that differ only in values that enter the computation as numbers (the learning rate, L1/L2,
a dropout rate, the seed) share one compiled program: params and optimizer state carry a leading
trial axis, the model and the optimizer are built inside ``jax.vmap`` from the trial's traced
scalars, and one epoch (train/epochs.py, its scan driver) runs every trial at once. Each trial
keeps its own PRNG stream (initialization, shuffling, dropout), so with shuffled or stream epochs
trial ``i`` follows exactly the run ``loop.fit`` would make with the same values and seed (with
bucketed sentences every trial follows the first trial's batch order). The best-epoch / patience /
LR-halving rules are ``loop.Policy``'s, applied per trial.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.optim.averaging import averaged_params
from lecturenn.optim.schedules import set_lr_scale
from lecturenn.train import loop
from lecturenn.train.step import make_step


@dataclass
class TrialsResult:
    """Per-trial outcome of ``train_vmapped``.

    ``params`` and ``state`` hold each trial's kept (best-on-validation) parameters with a leading
    trial axis; ``last`` the (params, state, opt_state, key) of the last epoch, to continue from.
    ``histories[i]`` is trial i's ``loop.History``; ``diverged[i]`` is the epoch whose loss became
    NaN/inf (the trial stopped there, keeping its last finite parameters) or None.
    """

    params: Any
    state: Any
    histories: list[loop.History]
    diverged: list[int | None] = field(default_factory=list)
    last: tuple = ()


def _select(mask, new, old):
    """Per trial: ``new`` where mask[i], else ``old`` (mask broadcast over each leaf's axes)."""

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (jnp.ndim(a) - 1)), a, b)

    return jax.tree_util.tree_map(pick, new, old)


def trial_slice(tree, i: int):
    """Trial i's pytree out of a stacked (leading trial axis) pytree."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def trial_epoch(build: Callable[[dict], tuple], make_epoch: Callable, grads: str = "manual"):
    """One trial's epoch as a pure function of its hyper-parameters, to be vmapped over trials:
    ``run(params, state, opt_state, hp, active, data, plan) -> (params, state, opt_state, loss,
    aux, moved)``; a trial that is not ``active``, or whose loss is not finite, keeps its state."""

    def run(params, state, opt_state, hp, active, data, plan):
        step = make_step(*build(hp), grads, jit=False)
        new = make_epoch(step).run(params, state, opt_state, data, plan)
        moved = active & jnp.isfinite(new[3])
        params, state, opt_state = _select(moved, new[:3], (params, state, opt_state))
        return params, state, opt_state, new[3], new[4], moved

    return run


def train_vmapped(
    build: Callable[[dict], tuple],
    make_epoch: Callable,
    data: Any,
    *,
    hparams: dict[str, Any],
    seeds: Sequence[int],
    epochs: int,
    grads: str = "manual",
    valid: Any = None,
    evaluate: Callable | None = None,
    policy: loop.Policy | None = None,
    train_row: Callable = loop.default_row,
    on_epoch: Callable[[int, list[dict | None]], None] | None = None,
) -> TrialsResult:
    """Train ``len(seeds)`` trials, each epoch one compiled program for all.

    ``build(hp) -> (model, optimizer)`` makes a trial's model and optimizer from ``hp``, a dict of
    its hyper-parameters; it is called inside ``vmap`` with traced scalars, so it must not branch
    in Python on their values. ``hparams`` maps those names to arrays of shape (n_trials,).
    ``make_epoch(step) -> epochs.Epoch`` builds the epoch driver around a step (with the scan
    driver). Trial i starts from ``PRNGKey(seeds[i])`` and follows ``loop.fit``'s key splits and
    rules; ``evaluate(params, state, valid)`` runs per trial on the host. Early stopping and
    divergence freeze a trial while the others go on; training ends when none is left.
    ``on_epoch(epoch, rows)`` receives each trial's metrics row (None for a stopped trial).
    """
    seeds = np.asarray(seeds)
    num_trials = len(seeds)
    policy = policy or loop.Policy()
    hparams = {name: jnp.asarray(values) for name, values in hparams.items()}
    for name, values in hparams.items():
        if values.shape != (num_trials,):
            raise ValueError(f"hparams[{name!r}] has shape {values.shape}, want ({num_trials},)")

    def start(seed, hp):
        model, optimizer = build(hp)
        init_key, key = jax.random.split(jax.random.PRNGKey(seed))
        params, state = model.init(init_key)
        return params, state, optimizer.init(params), key

    trial_run = trial_epoch(build, make_epoch, grads)
    first_hp = {k: v[0] for k, v in hparams.items()}
    planner = make_epoch(make_step(*build(first_hp), grads, jit=False))
    split_keys = jax.jit(jax.vmap(jax.random.split))
    run_epochs: dict = {}  # compiled per layout of the plan's trial axes
    unstack = jax.jit(lambda tree: [trial_slice(tree, i) for i in range(num_trials)])
    select = jax.jit(_select)
    # Initialized one trial at a time and stacked on the host: the vmapped initializers would
    # compile about 3x slower (batched threefry) than this one unbatched program, run n times.
    start = jax.jit(start)
    firsts = [start(seed, {k: v[i] for k, v in hparams.items()}) for i, seed in enumerate(seeds)]
    params, state, opt_state, keys = jax.tree_util.tree_map(
        lambda *leaves: jnp.asarray(np.stack(leaves)), *jax.device_get(firsts)
    )
    best = (params, state)

    histories = [loop.History() for _ in range(num_trials)]
    diverged: list[int | None] = [None] * num_trials
    active = np.ones(num_trials, bool)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        pairs = split_keys(keys)
        keys, epoch_keys = pairs[:, 0], pairs[:, 1]
        plans, axes = planner.trial_plans(epoch_keys)
        layout = str(jax.tree_util.tree_structure(axes)) + str(jax.tree_util.tree_leaves(axes))
        if layout not in run_epochs:
            vmapped = jax.vmap(trial_run, in_axes=(0, 0, 0, 0, 0, None, axes))
            run_epochs[layout] = jax.jit(vmapped)
        params, state, opt_state, losses, auxes, moved = run_epochs[layout](
            params, state, opt_state, hparams, jnp.asarray(active), data, plans
        )
        losses, auxes, moved = jax.device_get((losses, auxes, moved))
        seconds = time.perf_counter() - started
        shown = averaged_params(opt_state, params)  # as trained, or their average
        trials = unstack((shown, state)) if valid is not None else None
        rows: list[dict | None] = [None] * num_trials
        improved = np.zeros(num_trials, bool)
        for i in np.flatnonzero(active):
            if not moved[i]:
                diverged[i], active[i] = epoch, False
                continue
            history = histories[i]
            aux_i = {k: v[i] for k, v in auxes.items()}
            row = {"epoch": epoch, **train_row(losses[i], aux_i), "seconds": seconds}
            if policy.halve_lr_on_plateau:
                row["lr_scale"] = history.lr_scale
            if valid is not None:
                row.update({f"val_{k}": v for k, v in evaluate(*trials[i], valid).items()})
            improved[i], _ = policy.record(history, row)
            rows[i] = row
            if history.stopped_early:
                active[i] = False
        best = select(jnp.asarray(improved), (shown, state), best)
        if policy.halve_lr_on_plateau:
            scales = jnp.asarray([h.lr_scale for h in histories], jnp.float32)
            opt_state = set_lr_scale(opt_state, scales)
        if on_epoch is not None:
            on_epoch(epoch, rows)
        if not active.any():
            break
    return TrialsResult(best[0], best[1], histories, diverged, (params, state, opt_state, keys))
