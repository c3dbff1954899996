"""Data parallelism with ``jax.sharding``: the batch is split over a mesh axis "data", the params
are replicated, and the compiler inserts the all-reduce of the gradients.

The loss is a mean over the global batch, so the gradient of each replica's shard, summed over the
devices by the all-reduce, is the global batch's gradient: one step on N devices equals one step on
one device up to the order of the float additions. Nothing here knows about the model or the kind
of epoch: any epoch of train/epochs.py (shuffled, bucketed sentences, text streams) becomes data
parallel when its step is built on ``shard_model(model, mesh)`` — every batch's leading axis
(examples, sentences, streams) split over the devices — and it is called through
``on_mesh(epoch, mesh)``, which places its inputs on the mesh.

Running on a multi-GPU node / a TPU pod slice
---------------------------------------------
The epoch plugs into ``loop.fit`` through ``epoch_fn``. A complete script, ``train_dp.py``::

    import sys
    from lecturenn.train import parallel
    args = sys.argv[1:]                         # several hosts: before any other JAX call
    if args == ["auto"]:                        # Cloud TPU, Slurm, Open MPI: detected
        parallel.init_distributed()
    elif args:                                  # COORDINATOR NUM_PROCESSES PROCESS_ID
        parallel.init_distributed(args[0], int(args[1]), int(args[2]))
    import jax
    from lecturenn.models import mlp
    from lecturenn.optim.build import build_optimizer
    from lecturenn.train import epochs, loop, step
    model = mlp.make(mlp.MLPConfig(input_dim=64, num_classes=10, hidden=(512,)))
    optimizer = build_optimizer("adam", 1e-3)
    train = ...                                 # the same {"x", "y"} arrays on every host
    mesh = parallel.make_mesh()                 # every device of every process, axis "data"
    sharded = parallel.shard_model(model, mesh)
    epoch = epochs.shuffled(step.make_step(sharded, optimizer, jit=False),
                            num_examples=len(train["y"]), batch_size=256)
    params, state, history = loop.fit(model, optimizer, train, epochs=10,
                                      key=jax.random.PRNGKey(0),
                                      epoch_fn=parallel.on_mesh(epoch, mesh))

- One node with 8 GPUs (one process sees them all): ``python train_dp.py``.
- Two 8-GPU nodes (16 devices; node 0 at 10.0.0.1 serves the rendezvous on port 12355):
  ``python train_dp.py 10.0.0.1:12355 2 0`` on node 0 and ``python train_dp.py 10.0.0.1:12355
  2 1`` on node 1. Under Slurm or Open MPI the three values come from the environment:
  ``srun --nodes=2 --ntasks-per-node=1 python train_dp.py auto``.
- A Cloud TPU pod slice, the same script on every host (the coordinator is found
  automatically): ``gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all
  --command="python train_dp.py auto"``.

``batch_size`` is the global batch; it must divide by the number of devices. Every process must
hold the same data and make the same calls (each computes the same permutation from the same key).
On CPU the collectives are gloo's over TCP (set by ``init_distributed``); the tests run two such
processes on 127.0.0.1, and ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` emulates eight
devices in one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lecturenn.errors import UserError
from lecturenn.models.base import Model

DATA_AXIS = "data"


def init_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 120,
) -> None:
    """Join a multi-process JAX run (call before any other JAX computation in the process).

    ``coordinator`` is "host:port" of process 0, which serves the rendezvous; every process gets
    the same ``num_processes`` and its own ``process_id`` in 0..num_processes-1. Left out, they
    are read from the environment variables ``LECTURENN_COORDINATOR``, ``LECTURENN_NUM_PROCESSES``
    and ``LECTURENN_PROCESS_ID`` when set (any machines: ``lecturenn run`` with
    ``parallel.distributed = true`` on each), else JAX detects them on Cloud TPU, Slurm and
    Open MPI. CPU processes talk through gloo collectives. ``timeout_s`` bounds the wait for the
    other processes.
    """
    if coordinator is None and num_processes is None and process_id is None:
        coordinator, num_processes, process_id = _from_environment()
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise UserError("give coordinator, num_processes and process_id together, or none of them")
    if all(given) and not 0 <= process_id < num_processes:
        raise UserError(f"process_id must be in 0..{num_processes - 1}, got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
    )


def _from_environment() -> tuple[str | None, int | None, int | None]:
    names = ("LECTURENN_COORDINATOR", "LECTURENN_NUM_PROCESSES", "LECTURENN_PROCESS_ID")
    values = [os.environ.get(name) for name in names]
    if not any(values):
        return None, None, None
    if not all(values):
        missing = [n for n, v in zip(names, values, strict=True) if not v]
        raise UserError(f"set {', '.join(names)} together; missing {', '.join(missing)}")
    try:
        return values[0], int(values[1]), int(values[2])
    except ValueError:
        raise UserError(
            f"{names[1]}={values[1]!r} and {names[2]}={values[2]!r} must be integers"
        ) from None


def barrier(name: str) -> None:
    """Wait until every process of a multi-process run gets here (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def make_mesh(num_devices: int | None = None, devices=None) -> Mesh:
    """A one-axis mesh named "data" over the first ``num_devices`` devices (all by default)."""
    devices = list(jax.devices() if devices is None else devices)
    num_devices = len(devices) if num_devices is None else num_devices
    if not 1 <= num_devices <= len(devices):
        raise UserError(
            f"asked for {num_devices} devices but {len(devices)} are visible; on CPU set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N before starting Python"
        )
    return Mesh(np.array(devices[:num_devices]), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (example) axis split over "data", other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def local_copy(tree):
    """Each leaf as this process's own copy: a replicated array that spans several processes
    (a multi-host run) becomes its first local shard, so it can be saved or evaluated here."""

    def local(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return leaf.addressable_data(0)
        return leaf

    return jax.tree_util.tree_map(local, tree)


def shard_batch(batch, mesh: Mesh):
    """Place each array of ``batch`` with its leading axis split over the devices of ``mesh``."""
    return jax.device_put(batch, batch_sharding(mesh))


def replicate(tree, mesh: Mesh):
    """Place a whole copy of each leaf of ``tree`` (params, optimizer state, data) on every
    device of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def shard_model(model: Model, mesh: Mesh) -> Model:
    """The same model, with every training batch constrained to the "data" sharding.

    Inside jit this is what makes the step data-parallel: each device computes the forward and
    backward of its shard, and the mean over the global batch becomes an all-reduce.
    """
    sharding = batch_sharding(mesh)

    def constrain(batch):
        return jax.lax.with_sharding_constraint(batch, sharding)

    def loss(params, state, batch, key):
        return model.loss(params, state, constrain(batch), key)

    def manual_value_and_grad(params, state, batch, key):
        return model.manual_value_and_grad(params, state, constrain(batch), key)

    return model._replace(loss=loss, manual_value_and_grad=manual_value_and_grad)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    num_devices = mesh.devices.size
    if batch_size % num_devices:
        raise UserError(
            f"train.batch_size={batch_size} must be divisible by the number of devices "
            f"({num_devices}) so that each gets an equal shard"
        )


def on_mesh(epoch: Callable, mesh: Mesh) -> Callable:
    """``epoch(params, state, opt_state, data, key)`` with its inputs placed on ``mesh``.

    The same signature and the same result (up to float reduction order) as the one-device epoch
    when ``epoch``'s step is built on ``shard_model(model, mesh)``. Params, state, optimizer state
    and key are replicated (a no-op when they already are); the data is replicated once, on the
    first call, and every device then gathers only its own rows of each batch from its copy.
    """
    placed_data: dict = {"source": [], "placed": None}

    def run(params, state, opt_state, data, key):
        # ``fit`` passes the same training set every epoch: copy it to the devices only once.
        leaves = jax.tree_util.tree_leaves(data)
        source = placed_data["source"]
        same = len(source) == len(leaves) and all(
            a is b for a, b in zip(source, leaves, strict=True)
        )
        if not same:
            placed_data.update(source=leaves, placed=replicate(data, mesh))
        params, state, opt_state, key = replicate((params, state, opt_state, key), mesh)
        return epoch(params, state, opt_state, placed_data["placed"], key)

    return run
