"""Synthetic classification and sequence tasks used in the lectures' experiments.

- spirals: CS231n's K interleaved spiral arms (not linearly separable);
- xor: 6.036's XOR point clouds (needs a hidden layer);
- adding problem: Hochreiter & Schmidhuber 1997 / Le et al. 2015 (IRNN) — sum the two marked
  numbers of a long sequence.
"""

from __future__ import annotations

import numpy as np


def spirals(
    num_per_class: int = 300, num_classes: int = 3, noise: float = 0.2, seed: int = 0
) -> dict:
    """x (N, 2) float32 on K spiral arms, y (N,) int32 (CS231n "spiral data")."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(num_classes):
        r = np.linspace(0.0, 1.0, num_per_class)
        t = (
            np.linspace(k * 4.0, (k + 1) * 4.0, num_per_class)
            + rng.normal(size=num_per_class) * noise
        )
        xs.append(np.c_[r * np.sin(t), r * np.cos(t)])
        ys.append(np.full(num_per_class, k))
    return _shuffled(np.concatenate(xs), np.concatenate(ys), rng)


def xor(num_examples: int = 400, noise: float = 0.25, seed: int = 0) -> dict:
    """Four Gaussian clouds at (±1, ±1); the label is the XOR of the two signs."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(num_examples, 2))
    x = (corners * 2 - 1) + rng.normal(size=(num_examples, 2)) * noise
    return _shuffled(x, corners[:, 0] ^ corners[:, 1], rng)


def adding_problem(num_examples: int, length: int, seed: int = 0) -> dict:
    """x (N, T, 2): a uniform [0, 1) number and a 0/1 marker with exactly two 1s, one in each half;
    y (N,) the sum of the two marked numbers. Predicting 1 always gives MSE ≈ 0.167."""
    rng = np.random.default_rng(seed)
    values = rng.random((num_examples, length))
    markers = np.zeros((num_examples, length))
    half = length // 2
    first = rng.integers(0, half, num_examples)
    second = rng.integers(half, length, num_examples)
    rows = np.arange(num_examples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    return {"x": x, "y": (values[rows, first] + values[rows, second]).astype(np.float32)}


def adding_batch(key, num_examples: int, length: int) -> dict:
    """``adding_problem`` drawn on device from a jax.random key (the same distribution): a fresh
    batch each training step, so a network never sees a sequence twice (Le et al. 2015 train on
    newly generated sequences)."""
    import jax
    import jax.numpy as jnp

    key_values, key_first, key_second = jax.random.split(key, 3)
    values = jax.random.uniform(key_values, (num_examples, length), jnp.float32)
    half = length // 2
    first = jax.random.randint(key_first, (num_examples,), 0, half)
    second = jax.random.randint(key_second, (num_examples,), half, length)
    steps = jnp.arange(length)
    markers = ((steps == first[:, None]) | (steps == second[:, None])).astype(jnp.float32)
    rows = jnp.arange(num_examples)
    y = values[rows, first] + values[rows, second]
    return {"x": jnp.stack([values, markers], axis=-1), "y": y}


def _shuffled(x, y, rng) -> dict:
    order = rng.permutation(len(x))
    return {"x": x[order].astype(np.float32), "y": y[order].astype(np.int32)}
