import numpy as np
import pytest

from lecturenn.data import preprocess
from lecturenn.errors import UserError


def _correlated(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(5, 5))
    return rng.normal(size=(n, 5)) @ mixing + rng.normal(size=5) * 3


def test_mean_subtraction_centres_train_and_reuses_train_mean_on_test():
    train, test = _correlated(seed=0), _correlated(seed=1)
    stats = preprocess.fit_mean(train)
    np.testing.assert_allclose(preprocess.apply_mean(stats, train).mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(preprocess.apply_mean(stats, test), test - train.mean(0))


def test_standardize_gives_unit_variance_and_keeps_constant_features_finite():
    train = _correlated()
    train[:, 2] = 7.0
    out = preprocess.apply_standardize(preprocess.fit_standardize(train), train)
    np.testing.assert_allclose(out.std(0)[[0, 1, 3, 4]], 1, atol=1e-10)
    assert np.all(out[:, 2] == 0)


def test_whitening_gives_identity_covariance():
    train = _correlated()
    white = preprocess.apply_pca(preprocess.fit_pca(train, whiten=True, eps=0.0), train)
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(5), atol=1e-8)


def test_pca_decorrelates_and_orders_by_variance():
    train = _correlated()
    stats = preprocess.fit_pca(train, num_components=3)
    projected = preprocess.apply_pca(stats, train)
    cov = np.cov(projected.T, bias=True)
    np.testing.assert_allclose(cov, np.diag(np.diag(cov)), atol=1e-8)
    assert np.all(np.diff(np.diag(cov)) <= 0)
    np.testing.assert_allclose(np.diag(cov), stats["explained_variance"], rtol=1e-10)


def test_images_keep_shape_and_unknown_kind_is_a_user_error():
    x = np.random.default_rng(0).random((10, 8, 8, 1)).astype(np.float32)
    (out,) = preprocess.fit_apply("standardize", x)
    assert out.shape == x.shape and out.dtype == np.float32
    with pytest.raises(UserError, match="unknown preprocessing 'zca'"):
        preprocess.fit_apply("zca", x)
