"""Adding-problem regressor: BPTT from the last state only, against jax.grad (float64) for the
tanh RNN, IRNN and LSTM; the MSE of the constant predictor 1 is the published baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lecturenn.data.synthetic import adding_problem
from lecturenn.errors import UserError
from lecturenn.gradcheck import assert_manual_matches_autodiff
from lecturenn.models import sequence_regressor as sr


@pytest.mark.parametrize("cell", ["tanh", "irnn", "lstm"])
def test_manual_grads_match_jax_grad(cell):
    cfg = sr.SequenceRegressorConfig(
        input_dim=2, hidden_dim=6, cell=cell, init_scale=0.5, dtype="float64"
    )
    model = sr.make(cfg)
    params, state = model.init(jax.random.PRNGKey(0))
    # Larger output weights so every parameter gets a gradient well above rounding.
    params["out"]["W"] = params["out"]["W"] * 500.0
    data = adding_problem(5, 8, seed=1)
    batch = {"x": jnp.asarray(data["x"], jnp.float64), "y": jnp.asarray(data["y"], jnp.float64)}

    assert_manual_matches_autodiff(model, params, state, batch, None, tol=1e-6)


def test_loss_is_plain_mse_and_constant_one_scores_about_0_167():
    cfg = sr.SequenceRegressorConfig(input_dim=2, hidden_dim=3, cell="irnn", dtype="float64")
    model = sr.make(cfg)
    params, _ = model.init(jax.random.PRNGKey(0))
    params["out"] = {"W": jnp.zeros((3, 1)), "b": jnp.ones((1,))}  # ŷ = 1 for every sequence
    data = adding_problem(20000, 10, seed=2)
    loss, _ = model.loss(
        params, {}, {"x": jnp.asarray(data["x"]), "y": jnp.asarray(data["y"])}, None
    )
    assert np.isclose(float(loss), np.mean((1.0 - data["y"]) ** 2), rtol=1e-6)
    assert abs(float(loss) - 1 / 6) < 0.01


def test_unknown_cell_is_a_user_error():
    with pytest.raises(UserError, match="model.cell"):
        sr.make(sr.SequenceRegressorConfig(cell="gru"))
