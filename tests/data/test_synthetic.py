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


def test_adding_batch_on_device_draws_the_same_task_and_a_new_batch_per_key():
    import jax

    a = synthetic.adding_batch(jax.random.PRNGKey(0), 2000, 30)
    values, markers = np.asarray(a["x"][..., 0]), np.asarray(a["x"][..., 1])
    assert a["x"].shape == (2000, 30, 2) and a["y"].shape == (2000,)
    assert np.all(markers.sum(1) == 2) and np.all(markers[:, :15].sum(1) == 1)
    np.testing.assert_allclose((values * markers).sum(1), a["y"], rtol=1e-6)
    # both halves' positions are uniform: every position of each half is marked
    assert np.all(markers.sum(0) > 0)
    assert 0.15 < float(np.mean((np.asarray(a["y"]) - 1.0) ** 2)) < 0.19
    b = synthetic.adding_batch(jax.random.PRNGKey(1), 2000, 30)
    assert not np.array_equal(np.asarray(a["x"]), np.asarray(b["x"]))
