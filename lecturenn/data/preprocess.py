"""Input preprocessing fitted on the training split and applied to any split (CS231n/CS224n notes).

Each ``fit_*`` returns a small dict of arrays (a pytree) and ``apply_*`` uses it, so the same
statistics computed on train are applied to validation and test: never refit on test data.
"""

from __future__ import annotations

import numpy as np

from lecturenn.errors import UserError


def _as_rows(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def fit_mean(x: np.ndarray) -> dict:
    """Mean subtraction: x ← x − mean(x_train) per feature."""
    return {"mean": _as_rows(x).mean(axis=0)}


def apply_mean(stats: dict, x: np.ndarray) -> np.ndarray:
    return (_as_rows(x) - stats["mean"]).reshape(x.shape).astype(x.dtype)


def fit_standardize(x: np.ndarray, eps: float = 1e-8) -> dict:
    """Normalization: x ← (x − μ) / σ per feature; constant features keep σ = 1."""
    rows = _as_rows(x)
    std = rows.std(axis=0)
    return {"mean": rows.mean(axis=0), "std": np.where(std > eps, std, 1.0)}


def apply_standardize(stats: dict, x: np.ndarray) -> np.ndarray:
    return ((_as_rows(x) - stats["mean"]) / stats["std"]).reshape(x.shape).astype(x.dtype)


def fit_pca(
    x: np.ndarray, num_components: int | None = None, *, whiten: bool = False, eps: float = 1e-5
) -> dict:
    """PCA (and whitening) via the SVD of the centred data (CS231n notes, "PCA and Whitening").

    With X centred, X = U S Vᵀ and the covariance is V diag(S²/N) Vᵀ. Projecting onto the top
    k columns of V decorrelates the features (PCA); dividing each by √(S²/N + eps) gives them
    unit variance as well (whitening), so the whitened training data has identity covariance.
    """
    rows = _as_rows(x)
    n, d = rows.shape
    k = d if num_components is None else num_components
    if not 1 <= k <= min(n, d):
        raise UserError(f"pca num_components={k} must be between 1 and {min(n, d)}")
    mean = rows.mean(axis=0)
    _, s, vt = np.linalg.svd(rows - mean, full_matrices=False)
    variance = s[:k] ** 2 / n
    scale = 1.0 / np.sqrt(variance + eps) if whiten else np.ones(k)
    return {"mean": mean, "components": vt[:k].T, "scale": scale, "explained_variance": variance}


def apply_pca(stats: dict, x: np.ndarray) -> np.ndarray:
    """Rows of x projected on the fitted components (and scaled, if whitening): shape (N, k)."""
    projected = (_as_rows(x) - stats["mean"]) @ stats["components"]
    return (projected * stats["scale"]).astype(np.float32 if x.dtype != np.float64 else x.dtype)


PREPROCESSORS = ("none", "mean", "standardize", "pca", "whiten")


def fit_apply(
    kind: str, train: np.ndarray, *others: np.ndarray, num_components: int | None = None
) -> tuple[np.ndarray, ...]:
    """Fit ``kind`` on ``train``; return (train, *others) transformed with those statistics."""
    if kind == "none":
        return (train, *others)
    if kind == "mean":
        stats, apply = fit_mean(train), apply_mean
    elif kind == "standardize":
        stats, apply = fit_standardize(train), apply_standardize
    elif kind in ("pca", "whiten"):
        stats = fit_pca(train, num_components, whiten=kind == "whiten")
        apply = apply_pca
    else:
        raise UserError(
            f"unknown preprocessing {kind!r}; expected one of {', '.join(PREPROCESSORS)}"
        )
    return tuple(apply(stats, a) for a in (train, *others))
