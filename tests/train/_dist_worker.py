"""Child process for tests/train/test_parallel.py: runs data-parallel epochs and prints one JSON
line (the last line of stdout; gloo prints its own lines before it).

    python _dist_worker.py devices                # all local devices vs one
    python _dist_worker.py process PORT ID COUNT  # process ID of COUNT joined on 127.0.0.1:PORT

For ``devices`` the parent sets XLA_FLAGS=--xla_force_host_platform_device_count=8.

The device count is fixed when JAX starts, so each configuration needs its own process.
"""

from __future__ import annotations

import json
import sys

BATCH_SIZE = 16


def problem():
    """A small MLP with dropout (so the per-step keys matter), data and SGD with momentum.

    Float64 when the process runs with JAX_ENABLE_X64, float32 otherwise.
    """
    import jax
    import numpy as np
    import optax

    from lecturenn.models import mlp

    dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    model = mlp.make(
        mlp.MLPConfig(
            input_dim=6, num_classes=3, hidden=(16,), activation="tanh", dropout=0.1, dtype=dtype
        )
    )
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 2
    y = rng.integers(0, 3, 96)
    data = {"x": (centres[y] + rng.normal(size=(96, 6))).astype(dtype), "y": y.astype(np.int32)}
    # One compiled init instead of a compilation per eager op: child start-up time counts.
    params, state = jax.jit(model.init)(jax.random.PRNGKey(0))
    optimizer = optax.sgd(0.1, momentum=0.9)
    return model, optimizer, params, state, data, jax.random.PRNGKey(1)


def host_leaves(tree) -> list:
    """Each leaf as a nested list, read from this process's first shard (replicated leaves)."""
    import jax
    import numpy as np

    return [np.asarray(x.addressable_data(0)).tolist() for x in jax.tree_util.tree_leaves(tree)]


def sharded_epoch(model, optimizer, mesh, driver="scan", batch_size=BATCH_SIZE):
    """The shuffled epoch of the model's batches split over ``mesh``, inputs placed on it."""
    from lecturenn.train import epochs, parallel
    from lecturenn.train.step import make_step

    parallel.check_batch_size(batch_size, mesh)
    step = make_step(parallel.shard_model(model, mesh), optimizer, jit=False)
    epoch = epochs.shuffled(step, num_examples=96, batch_size=batch_size, driver=driver)
    return parallel.on_mesh(epoch, mesh)


def _devices() -> dict:
    import jax

    from lecturenn.errors import UserError
    from lecturenn.train import epochs, parallel
    from lecturenn.train.step import make_step

    model, optimizer, params, state, data, key = problem()
    seen = []

    def record(sharding):
        seen.append(json.dumps(list(sharding.spec)))

    def recorded_vg(p, s, batch, k):
        jax.debug.inspect_array_sharding(batch["x"], callback=record)
        return model.manual_value_and_grad(p, s, batch, k)

    watched = model._replace(manual_value_and_grad=recorded_vg)
    mesh = parallel.make_mesh()
    result = {"device_count": jax.device_count()}
    for driver in ("scan", "loop"):
        epoch = sharded_epoch(watched, optimizer, mesh, driver)
        out = epoch(params, state, optimizer.init(params), data, key)
        # A second epoch from the first's outputs reuses the data already placed on the mesh.
        out = epoch(*out[:3], data, jax.random.fold_in(key, 1))
        result[f"{driver}_eight"] = host_leaves(out)
        result[f"{driver}_replicated"] = all(
            x.sharding.is_fully_replicated and len(x.sharding.device_set) == jax.device_count()
            for x in jax.tree_util.tree_leaves(out[:3])
        )
    one = epochs.shuffled(
        make_step(model, optimizer, jit=False), num_examples=96, batch_size=BATCH_SIZE
    )
    out = one(params, state, optimizer.init(params), data, key)
    result["one"] = host_leaves(one(*out[:3], data, jax.random.fold_in(key, 1)))
    result["batch_specs"] = sorted(set(seen))
    sharded = parallel.shard_batch(data, mesh)
    result["shard_rows"] = sorted({s.data.shape[0] for s in sharded["x"].addressable_shards})
    try:
        sharded_epoch(model, optimizer, mesh, batch_size=12)
        result["indivisible_error"] = None
    except UserError as err:
        result["indivisible_error"] = str(err)
    return result


def fit_two_epochs(model, optimizer, data, epoch_fn=None):
    """``loop.fit`` for two epochs from PRNGKey(1), optionally with a replacement epoch."""
    import jax

    from lecturenn.train import loop

    return loop.fit(
        model,
        optimizer,
        data,
        epochs=2,
        batch_size=BATCH_SIZE,
        key=jax.random.PRNGKey(1),
        epoch_fn=epoch_fn,
    )


def _process(port: int, process_id: int, num_processes: int) -> dict:
    from lecturenn.train import parallel

    parallel.init_distributed(f"127.0.0.1:{port}", num_processes, process_id, timeout_s=60)
    import jax

    model, optimizer, _, _, data, _ = problem()
    mesh = parallel.make_mesh()
    epoch = sharded_epoch(model, optimizer, mesh)
    params, state, history = fit_two_epochs(model, optimizer, data, epoch)
    return {
        "process_index": jax.process_index(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "params": host_leaves(params),
        "train_loss": [row["train_loss"] for row in history.epochs],
    }


def main(argv: list[str]) -> None:
    if argv[0] == "devices":
        result = _devices()
    else:
        result = _process(int(argv[1]), int(argv[2]), int(argv[3]))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
