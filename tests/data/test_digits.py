import numpy as np

from lecturenn.data.digits import load_digits_split


def test_digits_split_is_stratified_scaled_and_deterministic():
    a = load_digits_split(test_fraction=0.25, seed=3)
    assert a["x_train"].shape[1:] == (8, 8, 1) and a["x_train"].dtype == np.float32
    assert len(a["x_train"]) + len(a["x_test"]) == 1797
    assert 0.0 <= a["x_train"].min() and a["x_train"].max() <= 1.0
    train_share = np.bincount(a["y_train"]) / len(a["y_train"])
    test_share = np.bincount(a["y_test"]) / len(a["y_test"])
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    b = load_digits_split(test_fraction=0.25, seed=3)
    assert np.array_equal(a["x_test"], b["x_test"])
