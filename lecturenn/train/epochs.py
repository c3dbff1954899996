"""Epoch drivers, one per kind of data, all built on one training step (train/step.py).

An epoch is ``epoch(params, state, opt_state, data, key) -> (params, state, opt_state, loss,
aux)``, with ``loss`` and each entry of ``aux`` averaged over the epoch's steps. Each driver splits
the epoch into a *plan* (which rows form each step's batch, and each step's key) and a *run* over
the plan, so that the trials of a sweep can run one vmapped program (train/trials.py):

- :func:`shuffled` — mini-batches of a fresh permutation of the examples (MIT 6.036's SGD with
  shuffling; the remainder is dropped): classifiers, the NPLM's n-gram pairs, the adding problem.
- :func:`bucketed` — sentences grouped by padded width (8, 16, 32, … columns), shuffled within
  their group, the batches of all groups in a shuffled order: one compiled step per width, and no
  step pads a 10-word sentence to the longest sentence of the corpus (the window tagger).
- :func:`streams` — consecutive (B, T) windows of B parallel text streams, in order, the model's
  state (the recurrent carry) running from zeros through every window: truncated BPTT (Zaremba
  et al. 2014's reader). The training loop's ``state`` passes through untouched.

Two drivers run every kind and give the same parameters (up to float rounding where XLA fuses
differently):

- ``"scan"``: the whole epoch is one ``lax.scan`` over the plan, compiled once; the host sees one
  result per epoch. The bucketed scan picks each step's width with ``lax.switch``.
- ``"loop"``: a Python loop over one jitted step (one per width when bucketed). Easier to debug,
  and faster where XLA CPU slows a step down inside a scan.

``augment(key, batch) -> batch`` runs on device inside the step (input noise, image flips, word
dropout), with its key taken from the step's as ``key, augment_key = split(key)``.
``progress(steps_done, loss)`` is called on the host about ``PROGRESS_TICKS`` times an epoch (from
inside the scan through ``jax.debug.callback``), for a progress bar within long epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.errors import UserError

DRIVERS = ("scan", "loop")
PROGRESS_TICKS = 20  # progress callbacks per epoch, at most

Step = Callable[..., tuple]  # (params, state, opt_state, batch, key) -> (p, s, o, loss, aux)


class Epoch(NamedTuple):
    """An epoch driver.

    ``plan(key)`` draws the epoch's batches and step keys; ``run(params, state, opt_state, data,
    plan)`` trains through them (a pure function for the scan driver, so it can be vmapped over
    trials); ``trial_plans(keys) -> (plans, axes)`` makes the plans of a sweep's trials, with
    ``axes`` the ``in_axes`` of the plan's leaves (0: one per trial, None: shared). ``epoch`` is
    the whole epoch as one call, ``epoch(params, state, opt_state, data, key)``.
    """

    plan: Callable[[jax.Array], Any]
    run: Callable[..., tuple]
    trial_plans: Callable[[jax.Array], tuple[Any, Any]]
    epoch: Callable[..., tuple]

    def __call__(self, params, state, opt_state, data, key):
        return self.epoch(params, state, opt_state, data, key)


def _check_driver(driver: str) -> None:
    if driver not in DRIVERS:
        raise UserError(f"train.driver must be one of {', '.join(DRIVERS)}, got {driver!r}")


def with_augment(step: Step, augment: Callable | None) -> Step:
    """The step with ``augment(key, batch) -> batch`` applied to its batch first."""
    if augment is None:
        return step

    def augmented(params, state, opt_state, batch, key):
        key, augment_key = jax.random.split(key)
        return step(params, state, opt_state, augment(augment_key, batch), key)

    return augmented


def _ticker(progress: Callable | None, num_steps: int) -> Callable:
    """tick(i, loss) after step i (0-based), calling ``progress`` every ``num_steps //
    PROGRESS_TICKS`` steps; works traced (inside a scan) and on the host."""
    if progress is None:
        return lambda i, loss: None
    every = max(1, num_steps // PROGRESS_TICKS)

    def tick(i, loss):
        if isinstance(i, int):
            if (i + 1) % every == 0:
                progress(i + 1, float(loss))
            return
        jax.lax.cond(
            (i + 1) % every == 0,
            lambda: jax.debug.callback(progress, i + 1, loss),
            lambda: None,
        )

    return tick


def _steps(progress: Callable | None, num_steps: int):
    """The step numbers a scan hands its body for the progress ticks: None (no input at all,
    so the compiled epoch is the same as without progress) when nobody listens."""
    return None if progress is None else jnp.arange(num_steps)


def _means(losses, auxes):
    return jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, auxes)


def _stack_means(losses: list, auxes: list):
    aux = jax.tree_util.tree_map(lambda *v: jnp.mean(jnp.stack(v)), *auxes)
    return jnp.mean(jnp.stack(losses)), aux


def _per_trial_plans(plan: Callable) -> Callable:
    batched = jax.jit(jax.vmap(plan))

    def trial_plans(keys):
        plans = batched(keys)
        return plans, jax.tree_util.tree_map(lambda _: 0, plans)

    return trial_plans


def _whole(plan: Callable, run: Callable) -> Callable:
    """plan and run as one call (one compiled program when both are traceable)."""

    def epoch(params, state, opt_state, data, key):
        return run(params, state, opt_state, data, plan(key))

    return epoch


# --- shuffled mini-batches -----------------------------------------------------------------------


def epoch_batches(key, num_examples: int, batch_size: int):
    """A fresh permutation cut into (num_batches, batch_size) rows; the remainder is dropped."""
    num_batches = num_examples // batch_size
    if num_batches == 0:
        raise UserError(
            f"train.batch_size={batch_size} is larger than the training set "
            f"({num_examples} examples)"
        )
    perm = jax.random.permutation(key, num_examples)
    return perm[: num_batches * batch_size].reshape(num_batches, batch_size)


def shuffled(
    step: Step,
    *,
    num_examples: int,
    batch_size: int,
    driver: str = "scan",
    augment: Callable | None = None,
    progress: Callable | None = None,
) -> Epoch:
    """Mini-batches of ``batch_size`` rows of a fresh permutation of the ``num_examples`` rows of
    ``data`` (a dict of arrays with a common leading example axis)."""
    _check_driver(driver)
    step = with_augment(step, augment)
    tick = _ticker(progress, num_examples // max(batch_size, 1))

    def plan(key):
        perm_key, step_key = jax.random.split(key)
        order = epoch_batches(perm_key, num_examples, batch_size)
        return order, jax.random.split(step_key, order.shape[0])

    def gather(data, rows):
        return {name: value[rows] for name, value in data.items()}

    if driver == "scan":

        def run(params, state, opt_state, data, plan):
            def body(carry, xs):
                i, rows, k = xs
                p, s, o, loss, aux = step(*carry, gather(data, rows), k)
                tick(i, loss)
                return (p, s, o), (loss, aux)

            xs = (_steps(progress, plan[0].shape[0]), *plan)
            (params, state, opt_state), (losses, auxes) = jax.lax.scan(
                body, (params, state, opt_state), xs
            )
            return params, state, opt_state, *_means(losses, auxes)

        return Epoch(jax.jit(plan), run, _per_trial_plans(plan), jax.jit(_whole(plan, run)))

    jit_step = jax.jit(lambda p, s, o, data, rows, k: step(p, s, o, gather(data, rows), k))

    def run(params, state, opt_state, data, plan):
        order, keys = plan
        losses, auxes = [], []
        for i in range(order.shape[0]):
            params, state, opt_state, loss, aux = jit_step(
                params, state, opt_state, data, order[i], keys[i]
            )
            tick(i, loss)
            losses.append(loss)
            auxes.append(aux)
        return params, state, opt_state, *_stack_means(losses, auxes)

    plan = jax.jit(plan)
    return Epoch(plan, run, _per_trial_plans(plan), _whole(plan, run))


# --- sentences bucketed by padded width -------------------------------------------------------


def width_of(length: int, min_width: int = 8) -> int:
    """Padded width of a sentence: the next power of two, at least ``min_width``."""
    return max(min_width, 1 << max(int(length) - 1, 0).bit_length())


class BucketPlan(NamedTuple):
    """One entry per step, in the order the steps run: the width group, the sentence rows (padded
    with row 0), which of them are real, and the step's key; ``order`` is the permutation that
    took the batches from the order they were drawn in (group by group) to this one."""

    group: np.ndarray  # (steps,) index into the widths
    rows: np.ndarray  # (steps, batch_size) int32
    real: np.ndarray  # (steps, batch_size) bool
    order: np.ndarray  # (steps,)
    keys: jax.Array  # (steps,) keys


def bucketed(
    step: Step,
    *,
    lengths,
    batch_size: int,
    driver: str = "loop",
    augment: Callable | None = None,
    progress: Callable | None = None,
) -> Epoch:
    """Batches of ``batch_size`` sentences of one padded width, in a shuffled order; a group's last
    batch is filled with empty (fully masked) rows. ``data`` holds (S, Lmax) arrays (one row per
    sentence of the given ``lengths``, "mask" among them) and may hold "lengths", which batches
    leave out.

    The plan is drawn on the host (numpy, seeded from the key), so that each step's width is a
    Python number: the loop driver compiles one step per width, the scan driver one program with
    a ``lax.switch`` branch per width. In a sweep every trial follows the first trial's batch
    order, with its own step keys (dropout, word dropout).
    """
    _check_driver(driver)
    step = with_augment(step, augment)
    lengths = np.asarray(lengths)
    widths_of = np.array([width_of(n) for n in lengths])
    widths = sorted(set(widths_of.tolist()))
    groups = [np.flatnonzero(widths_of == w) for w in widths]
    tick = _ticker(progress, sum(-(-len(g) // batch_size) for g in groups))

    def plan(key):
        order_key, step_key = jax.random.split(key)
        rng = np.random.default_rng(np.asarray(jax.random.bits(order_key, (4,), jnp.uint32)))
        group, rows, real = [], [], []
        for g, members in enumerate(groups):
            members = rng.permutation(members)
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                group.append(g)
                real.append(np.arange(batch_size) < len(chunk))
                rows.append(np.pad(chunk, (0, batch_size - len(chunk))).astype(np.int32))
        keys = jax.random.split(step_key, len(group))
        order = rng.permutation(len(group))
        return BucketPlan(
            np.asarray(group, np.int32)[order],
            np.stack(rows)[order],
            np.stack(real)[order],
            order,
            keys[order],
        )

    def trial_plans(keys):
        shared = plan(keys[0])

        def step_keys(key):
            return jax.random.split(jax.random.split(key)[1], len(shared.order))[shared.order]

        axes = BucketPlan(None, None, None, None, 0)
        return shared._replace(keys=jax.jit(jax.vmap(step_keys))(keys)), axes

    def batch_at(data, rows, real, width):
        batch = {k: v[rows, :width] for k, v in data.items() if k != "lengths"}
        batch["mask"] = batch["mask"] * real[:, None].astype(batch["mask"].dtype)
        return batch

    if driver == "scan":

        def run(params, state, opt_state, data, plan):
            def branch(width):
                def take(carry, rows, real, k):
                    return step(*carry, batch_at(data, rows, real, width), k)

                return take

            branches = [branch(w) for w in widths]

            def body(carry, xs):
                i, g, rows, real, k = xs
                p, s, o, loss, aux = jax.lax.switch(g, branches, carry, rows, real, k)
                tick(i, loss)
                return (p, s, o), (loss, aux)

            xs = (jnp.asarray(plan.group), jnp.asarray(plan.rows), jnp.asarray(plan.real))
            (params, state, opt_state), (losses, auxes) = jax.lax.scan(
                body,
                (params, state, opt_state),
                (_steps(progress, len(plan.group)), *xs, plan.keys),
            )
            return params, state, opt_state, *_means(losses, auxes)

        return Epoch(plan, run, trial_plans, _whole(plan, jax.jit(run)))

    def one(params, state, opt_state, data, rows, real, key, width):
        return step(params, state, opt_state, batch_at(data, rows, real, width), key)

    jit_step = jax.jit(one, static_argnames="width")

    def run(params, state, opt_state, data, plan):
        losses, auxes = [], []
        for i, g in enumerate(plan.group):
            params, state, opt_state, loss, aux = jit_step(
                params,
                state,
                opt_state,
                data,
                plan.rows[i],
                plan.real[i],
                plan.keys[i],
                width=widths[g],
            )
            tick(i, loss)
            losses.append(loss)
            auxes.append(aux)
        return params, state, opt_state, *_stack_means(losses, auxes)

    return Epoch(plan, run, trial_plans, _whole(plan, run))


# --- streams of text with carried state (truncated BPTT) ----------------------------------------


def streams(
    step: Step,
    *,
    driver: str = "scan",
    augment: Callable | None = None,
    progress: Callable | None = None,
) -> Epoch:
    """``data`` = {"x", "y"}: (W, B, T) consecutive windows of B streams (data/text.py
    ``bptt_windows``). The windows run in order; the model's state after window w (its recurrent
    carry, as the model's ``loss`` returns it) is the state window w + 1 starts from, zeros at the
    start of the epoch. The ``state`` argument is handed back unchanged."""
    _check_driver(driver)
    step = with_augment(step, augment)

    def plan(key):
        return key

    def window_keys(data, key):
        return jax.random.split(key, jax.tree_util.tree_leaves(data)[0].shape[0])

    def zero_carry(params, state, opt_state, data, key):
        first = {name: value[0] for name, value in data.items()}
        shapes = jax.eval_shape(step, params, state, opt_state, first, key)[1]
        return jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

    if driver == "scan":

        def run(params, state, opt_state, data, key):
            keys = window_keys(data, key)
            carry0 = zero_carry(params, state, opt_state, data, keys[0])
            tick = _ticker(progress, keys.shape[0])

            def body(carry, xs):
                params, model_state, opt_state = carry
                i, batch, k = xs
                params, model_state, opt_state, loss, aux = step(
                    params, model_state, opt_state, batch, k
                )
                tick(i, loss)
                return (params, model_state, opt_state), (loss, aux)

            (params, _, opt_state), (losses, auxes) = jax.lax.scan(
                body, (params, carry0, opt_state), (_steps(progress, keys.shape[0]), data, keys)
            )
            return params, state, opt_state, *_means(losses, auxes)

        jit_run = jax.jit(run)
        return Epoch(plan, run, _per_trial_plans(plan), _whole(plan, jit_run))

    jit_step = jax.jit(step)

    def run(params, state, opt_state, data, key):
        keys = window_keys(data, key)
        model_state = zero_carry(params, state, opt_state, data, keys[0])
        tick = _ticker(progress, keys.shape[0])
        losses, auxes = [], []
        for w in range(keys.shape[0]):
            batch = {name: value[w] for name, value in data.items()}
            params, model_state, opt_state, loss, aux = jit_step(
                params, model_state, opt_state, batch, keys[w]
            )
            tick(w, loss)
            losses.append(loss)
            auxes.append(aux)
        return params, state, opt_state, *_stack_means(losses, auxes)

    return Epoch(plan, run, _per_trial_plans(plan), _whole(plan, run))
