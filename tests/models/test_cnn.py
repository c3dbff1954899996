"""The CNN's hand-written backprop (conv, batch norm, max-pool, dropout) equals jax.grad."""

import jax
import jax.numpy as jnp
import pytest

from lecturenn.errors import UserError
from lecturenn.gradcheck import assert_manual_matches_autodiff
from lecturenn.models import cnn


def _batch(key, shape, n=5, k=4):
    kx, ky = jax.random.split(key)
    return {
        "x": jax.random.normal(kx, (n, *shape), jnp.float64),
        "y": jax.random.randint(ky, (n,), 0, k),
    }


def _assert_manual_equals_autodiff(cfg, seed=0):
    model = cnn.make(cfg)
    key = jax.random.PRNGKey(seed)
    params, state = model.init(key)
    batch = _batch(jax.random.fold_in(key, 1), cfg.input_shape, k=cfg.num_classes)
    # regression: the compiled manual CNN grads were once wrong (see the helper's docstring)
    assert_manual_matches_autodiff(model, params, state, batch, jax.random.fold_in(key, 2))


@pytest.mark.parametrize(
    "shape,channels,dropout,batchnorm,impl",
    [
        ((8, 8, 1), (3, 4), 0.4, False, "auto"),
        ((8, 8, 2), (4, 3), 0.0, True, "im2col"),
        ((10, 10, 1), (3, 2), 0.3, True, "lax"),
    ],
)
def test_manual_grads_match_autodiff(shape, channels, dropout, batchnorm, impl):
    _assert_manual_equals_autodiff(
        cnn.CNNConfig(
            input_shape=shape,
            num_classes=4,
            channels=channels,
            dense=6,
            dropout=dropout,
            batchnorm=batchnorm,
            conv_impl=impl,
            dtype="float64",
        )
    )


def test_eval_mode_is_deterministic_and_per_example():
    cfg = cnn.CNNConfig(
        input_shape=(8, 8, 1),
        num_classes=3,
        channels=(2,),
        dense=5,
        dropout=0.5,
        batchnorm=True,
        dtype="float64",
    )
    model = cnn.make(cfg)
    params, state = model.init(jax.random.PRNGKey(0))
    x = _batch(jax.random.PRNGKey(1), cfg.input_shape)["x"]
    first = model.predict(params, state, x)
    assert first.shape == (5, 3)
    assert jnp.array_equal(first, model.predict(params, state, x))
    # eval uses running batch-norm statistics: one example alone scores as inside the batch
    assert jnp.allclose(model.predict(params, state, x[:1]), first[:1])


def test_too_many_blocks_and_bad_dropout_are_user_errors():
    with pytest.raises(UserError, match="shrink"):
        cnn.make(cnn.CNNConfig(input_shape=(4, 4, 1), num_classes=2, channels=(2, 2, 2)))
    with pytest.raises(UserError, match="dropout"):
        cnn.make(cnn.CNNConfig(input_shape=(8, 8, 1), num_classes=2, dropout=1.0))
