"""Many trials of one model trained as one vmapped program, epoch by epoch.

Trials that differ only in values that enter the computation as numbers (the learning rate, L1/L2,
a dropout rate, the seed) share one compiled program: params and optimizer state carry a leading
trial axis, the model and the optimizer are built inside ``jax.vmap`` from the trial's traced
scalars, and one epoch (train/epochs.py, its scan driver) runs every trial at once. Each trial
keeps its own PRNG stream (initialization, shuffling, dropout), so with shuffled or stream epochs
trial ``i`` follows exactly the run ``loop.fit`` would make with the same values and seed (with
bucketed sentences every trial follows the first trial's batch order). The best-epoch / patience /
LR-halving rules are ``loop.Policy``'s, applied per trial. ``per_call`` trains the trials in
slices through the same compiled epoch, for models whose single trial already fills the cores.
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
    NaN/inf (the trial stopped there, keeping its last finite parameters) or None;
    ``per_call`` how many trials each call of the compiled epoch trained.
    """

    params: Any
    state: Any
    histories: list[loop.History]
    diverged: list[int | None] = field(default_factory=list)
    last: tuple = ()
    per_call: int | str | None = None


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


VMAP_MAX_FLOPS = 3e7  # per_call="auto": all trials in one call below this, one at a time above


def _slices(num_trials: int, per_call: int) -> list[tuple[int, int]]:
    if per_call >= num_trials:
        return [(0, num_trials)]
    return [(a, min(a + per_call, num_trials)) for a in range(0, num_trials, per_call)]


def take_trials(tree, axes, index):
    """Trials ``index`` (an int or a slice) of the leaves whose axis is 0; None-axis leaves
    as they are."""
    return jax.tree_util.tree_map(
        lambda axis, leaf: leaf if axis is None else leaf[index],
        axes,
        tree,
        is_leaf=lambda axis: axis is None,
    )


def step_flops(single, params, state, opt_state, hp, data, plan) -> float | None:
    """XLA's estimate of the floating-point operations of one trial's epoch program, which
    counts the body of its ``lax.scan`` (one training step) once; None where XLA gives none."""
    lowered = single.lower(params, state, opt_state, hp, jnp.asarray(True), data, plan)
    costs = lowered.cost_analysis()
    costs = costs[0] if isinstance(costs, list | tuple) and costs else costs
    flops = costs.get("flops") if isinstance(costs, dict) else None
    return None if flops is None or flops < 0 else float(flops)


def auto_per_call(flops: float | None, num_trials: int) -> int:
    """``per_call="auto"``: one trial per call when a step's estimate exceeds
    ``VMAP_MAX_FLOPS``, else all of them."""
    return 1 if flops is not None and flops > VMAP_MAX_FLOPS else num_trials


def run_slices(batched, single, slices, stacked, active, data, plans_axes):
    """The trial epoch over each slice [a, b) of the trials in turn, ``batched`` (vmapped) for
    a slice of several, ``single`` (the unbatched program, the trial's values still traced) for
    one: (params, state, opt_state, losses, auxes, moved), the last three on the host, for all
    trials (losses and auxes NaN for a skipped slice, whose trials have all stopped)."""
    plans, axes = plans_axes
    if slices == [(0, len(active))]:
        out = batched(*stacked, jnp.asarray(active), data, plans)
        return (*out[:3], *jax.device_get(out[3:]))
    num_trials = len(active)
    losses, moved, auxes = np.full(num_trials, np.nan), np.zeros(num_trials, bool), {}
    pieces = []
    for a, b in slices:
        if not active[a:b].any():
            pieces.append(jax.tree_util.tree_map(lambda leaf, a=a, b=b: leaf[a:b], stacked[:3]))
            continue
        if b - a == 1:
            one = trial_slice(stacked, a)
            out = single(*one, jnp.asarray(active[a]), data, take_trials(plans, axes, a))
            out = jax.tree_util.tree_map(lambda leaf: leaf[None], out)
        else:
            part = jax.tree_util.tree_map(lambda leaf, a=a, b=b: leaf[a:b], stacked)
            plan = take_trials(plans, axes, slice(a, b))
            out = batched(*part, jnp.asarray(active[a:b]), data, plan)
        pieces.append(out[:3])
        losses[a:b], aux, moved[a:b] = jax.device_get(out[3:])
        for name, value in aux.items():
            auxes.setdefault(name, np.full((num_trials, *np.shape(value)[1:]), np.nan))
            auxes[name][a:b] = value
    joined = jax.tree_util.tree_map(lambda *leaves: jnp.concatenate(leaves), *pieces)
    return (*joined, losses, auxes, moved)


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
    per_call: int | str | None = None,
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

    ``per_call`` is how many trials each call of the compiled epoch trains (default: all): the
    trials go through it in slices of that many, one after another; a slice of one runs the
    unbatched program (the trial's values still traced, so one compilation serves every trial),
    and a slice whose trials have all stopped is skipped. Every trial's result is the same up to
    float rounding (which, in float32, can carry a trial at a high learning rate visibly apart
    within a few epochs: Adam can turn rounding in a near-zero gradient into a whole step). Many
    trials in one call pay where a trial's step is small (dispatch and thread synchronization
    shared by all); where one trial's step already fills the cores, matmuls batched over the
    trial axis are slower than the same matmuls one trial at a time (docs/performance.md).
    ``"auto"`` picks all trials when XLA's estimate of one step (:func:`step_flops`) is under
    ``VMAP_MAX_FLOPS``, else one; ``TrialsResult.per_call`` says what ran.
    """
    seeds = np.asarray(seeds)
    num_trials = len(seeds)
    policy = policy or loop.Policy()
    hparams = {name: jnp.asarray(values) for name, values in hparams.items()}
    for name, values in hparams.items():
        if values.shape != (num_trials,):
            raise ValueError(f"hparams[{name!r}] has shape {values.shape}, want ({num_trials},)")
    if not (per_call in (None, "auto") or (isinstance(per_call, int) and per_call >= 1)):
        raise ValueError(f"per_call must be a positive int, None or 'auto', got {per_call!r}")

    def start(seed, hp):
        model, optimizer = build(hp)
        init_key, key = jax.random.split(jax.random.PRNGKey(seed))
        params, state = model.init(init_key)
        return params, state, optimizer.init(params), key

    trial_run = trial_epoch(build, make_epoch, grads)
    single = jax.jit(trial_run)
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
        if per_call == "auto":
            one = trial_slice((params, state, opt_state, hparams), 0)
            flops = step_flops(single, *one, data, take_trials(plans, axes, 0))
            per_call = auto_per_call(flops, num_trials)
        per_call = num_trials if per_call is None else min(per_call, num_trials)
        layout = str(jax.tree_util.tree_structure(axes)) + str(jax.tree_util.tree_leaves(axes))
        if layout not in run_epochs:
            vmapped = jax.vmap(trial_run, in_axes=(0, 0, 0, 0, 0, None, axes))
            run_epochs[layout] = jax.jit(vmapped)
        params, state, opt_state, losses, auxes, moved = run_slices(
            run_epochs[layout],
            single,
            _slices(num_trials, per_call),
            (params, state, opt_state, hparams),
            active,
            data,
            (plans, axes),
        )
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
    last = (params, state, opt_state, keys)
    return TrialsResult(best[0], best[1], histories, diverged, last, per_call)
