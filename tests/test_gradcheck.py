import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lecturenn import gradcheck
from lecturenn.cli import main
from lecturenn.nn import activations


def test_numerical_grad_matches_a_known_derivative():
    params = {"w": jnp.array([0.3, -1.2, 2.0]), "b": jnp.array(0.7)}

    def f(p):
        return jnp.sum(jnp.sin(p["w"]) * p["b"] ** 2)

    numeric = gradcheck.numerical_grad(f, params, h=1e-5, chunk=2)
    np.testing.assert_allclose(numeric["w"], np.cos(params["w"]) * 0.49, rtol=1e-9)
    np.testing.assert_allclose(numeric["b"], 2 * 0.7 * np.sum(np.sin(params["w"])), rtol=1e-9)


def test_relative_error_uses_the_floor_for_near_zero_entries():
    assert gradcheck.relative_error([1.0, 0.0], [1.0 + 1e-9, 1e-13], 1e-10) < 1.1e-3
    assert gradcheck.relative_error([2.0], [1.0], 1e-10) == 0.5


def test_cli_gradcheck_mlp_passes_and_prints_the_three_way_table(capsys):
    assert main(["gradcheck", "mlp", "--depth", "2", "--batchnorm", "--dropout", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "manual~jax" in out and "manual~num" in out and "jax~num" in out
    assert "['layers'][0]['W']" in out and "all gradients agree" in out


def test_cli_gradcheck_fails_on_a_wrong_derivative(monkeypatch, capsys):
    wrong = activations.Activation(activations.tanh, lambda z, a: 1.0 - 0.9 * a * a)
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", wrong)
    assert main(["gradcheck", "mlp", "--activation", "tanh"]) == 1
    captured = capsys.readouterr()
    assert "NO" in captured.out and "FAILED" in captured.err


def test_three_way_reports_every_leaf():
    params = {"a": jnp.ones((2, 3)), "b": [jnp.zeros(3)]}

    def f(p):
        return jnp.sum(p["a"] ** 3) + jnp.sum(jnp.exp(p["b"][0]))

    rows = gradcheck.three_way(f, jax.grad(f), params)
    assert [r.path for r in rows] == ["['a']", "['b'][0]"]
    assert all(r.ok(1e-7, 1e-5) for r in rows)


def test_assert_manual_matches_autodiff_names_the_wrong_leaf():
    import pytest

    from lecturenn.models import mlp

    model = mlp.make(mlp.MLPConfig(input_dim=3, num_classes=2, hidden=(4,), dtype="float64"))
    params, state = model.init(jax.random.PRNGKey(0))
    batch = {"x": jax.random.normal(jax.random.PRNGKey(1), (5, 3)), "y": jnp.array([0, 1, 1, 0, 1])}
    key = jax.random.PRNGKey(2)
    gradcheck.assert_manual_matches_autodiff(model, params, state, batch, key)

    def off_by_a_bit(p, s, b, k):
        value, grads = model.manual_value_and_grad(p, s, b, k)
        grads["layers"][0]["b"] = grads["layers"][0]["b"] * 1.001
        return value, grads

    wrong = model._replace(manual_value_and_grad=off_by_a_bit)
    with pytest.raises(AssertionError, match=r"\['layers'\]\[0\]\['b'\]"):
        gradcheck.assert_manual_matches_autodiff(wrong, params, state, batch, key)


def _scaled(function, index, factor=1.001):
    """``function`` with the ``index``-th output (a grads dict, or the first of a tuple's dicts)
    scaled: a derivative off by a tenth of a percent."""

    def wrong(*args, **kwargs):
        out = list(function(*args, **kwargs))
        grads = out[index]
        if isinstance(grads, tuple):  # sll_value_and_grad: (value, (df, dA, dA0))
            grads = (grads[0], grads[1] * factor, grads[2])
        else:
            key = next(iter(grads)) if isinstance(grads, dict) else None
            grads = {**grads, key: grads[key] * factor} if key else grads * factor
        out[index] = grads
        return tuple(out)

    return wrong


FAMILIES = [
    ("quickstart_digits", "lecturenn.nn.layers", "affine_backward", 0),
    ("cnn_digits", "lecturenn.nn.conv", "conv2d_backward", 0),
    ("ner_window", "lecturenn.nn.sequence", "sll_value_and_grad", 1),
    ("ner_window_maxmargin", "lecturenn.nn.layers", "embedding_backward", None),
    ("ptb_nplm", "lecturenn.nn.layers", "embedding_backward", None),
    ("ptb_rnn", "lecturenn.nn.recurrent", "rnn_backward", 0),
    ("ptb_lstm_small", "lecturenn.nn.recurrent", "lstm_backward", 0),
    ("adding_problem", "lecturenn.nn.recurrent", "rnn_backward", 0),
]
_IDS = [f"{name}-{function}" for name, _, function, _ in FAMILIES]


@pytest.mark.parametrize(("name", "module_name", "function", "index"), FAMILIES, ids=_IDS)
def test_cli_gradcheck_of_a_config_fails_on_a_wrong_derivative(
    name, module_name, function, index, monkeypatch, capsys
):
    """A wrong backward in each model family (affine, conv, SLL, embedding scatter-add, RNN and
    LSTM BPTT) makes ``lecturenn gradcheck CONFIG`` exit 1, naming the leaf."""
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    module = importlib.import_module(module_name)
    original = getattr(module, function)
    if index is None:  # a single array: the embedding gradient
        wrong = lambda *a, f=original, **k: f(*a, **k) * 1.001  # noqa: E731
    else:
        wrong = _scaled(original, index)
    monkeypatch.setattr(module, function, wrong)
    assert main(["gradcheck", str(root / f"{name}.toml")]) == 1
    captured = capsys.readouterr()
    assert " NO" in captured.out and "FAILED" in captured.err
