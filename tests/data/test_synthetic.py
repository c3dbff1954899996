import numpy as np

from lecturenn.data import synthetic


def test_spirals_shapes_balance_and_determinism():
    a = synthetic.spirals(50, 3, seed=1)
    assert a["x"].shape == (150, 2) and a["x"].dtype == np.float32
    assert np.bincount(a["y"]).tolist() == [50, 50, 50]
    assert np.array_equal(a["x"], synthetic.spirals(50, 3, seed=1)["x"])
    assert np.all(np.linalg.norm(a["x"], axis=1) <= 1.0 + 1e-6)


def test_xor_labels_are_the_xor_of_the_quadrant():
    d = synthetic.xor(500, noise=0.05)
    quadrant = (d["x"] > 0).astype(int)
    assert np.mean((quadrant[:, 0] ^ quadrant[:, 1]) == d["y"]) > 0.99


def test_adding_problem_targets_are_the_sum_of_the_two_marked_values():
    d = synthetic.adding_problem(200, 30, seed=3)
    values, markers = d["x"][..., 0], d["x"][..., 1]
    assert np.all(markers.sum(1) == 2)
    assert np.all(markers[:, :15].sum(1) == 1)
    np.testing.assert_allclose((values * markers).sum(1), d["y"], rtol=1e-6)
    baseline = np.mean((d["y"] - 1.0) ** 2)
    assert 0.1 < baseline < 0.25
