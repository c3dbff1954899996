"""Train a model from Python, without a config file: the MLP of the quickstart on scikit-learn's
8×8 digits, with hand-written gradients, our Adam, dropout, and early stopping on a validation
split. Every piece is the library's own, called directly.

    python examples/train_from_python.py
"""

import jax
import numpy as np

from lecturenn.data.images import load_digits_split
from lecturenn.models import mlp
from lecturenn.optim import build_optimizer
from lecturenn.train import epochs, loop
from lecturenn.train.step import make_step


def main() -> float:
    split = load_digits_split(test_fraction=0.2, seed=0)
    x, y = split["x_train"].reshape(-1, 64), split["y_train"]
    mean, std = x.mean(0), x.std(0) + 1e-6
    train = loop.to_device({"x": (x[:1200] - mean) / std, "y": y[:1200]})
    valid = loop.to_device({"x": (x[1200:] - mean) / std, "y": y[1200:]})
    test = loop.to_device(
        {"x": (split["x_test"].reshape(-1, 64) - mean) / std, "y": split["y_test"]}
    )

    cfg = mlp.MLPConfig(
        input_dim=64, num_classes=10, hidden=(128, 64), dropout=0.2, init="he_normal"
    )
    model = mlp.make(cfg)
    optimizer = build_optimizer("adam", 1e-3, l2=1e-4)
    # one lax.scan per epoch over shuffled mini-batches, each step the hand-written backprop
    step = make_step(model, optimizer, grads="manual", jit=False)
    epoch = epochs.shuffled(step, num_examples=1200, batch_size=32, driver="scan")
    params, state, history = loop.fit(
        model,
        optimizer,
        train,
        epochs=30,
        key=jax.random.PRNGKey(0),
        epoch_fn=epoch,
        valid=valid,
        policy=loop.Policy("accuracy", patience=8),
    )
    accuracy = loop.make_evaluate(model)(params, state, test)["accuracy"]
    print(
        f"best epoch {history.best_epoch} of {len(history.epochs)}: "
        f"validation accuracy {history.epochs[history.best_epoch - 1]['val_accuracy']:.3f}, "
        f"test accuracy {accuracy:.3f}"
    )
    return float(np.asarray(accuracy))


if __name__ == "__main__":
    main()
