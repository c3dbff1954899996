"""scikit-learn's bundled 8×8 digits (1,797 images, 10 classes): the offline data set of the
quickstart. Nothing is downloaded."""

from __future__ import annotations

import numpy as np


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> dict:
    """Stratified, deterministic split: x (N, 8, 8, 1) float32 scaled to [0, 1], y int32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
