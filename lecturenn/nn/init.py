"""Parameter initializers: ``init(key, shape, dtype=jnp.float32) -> array``.

CS224n notes §2.6 (Xavier/Glorot), the MIT 6.036 notes (N(0, 1/m)), He et al. 2015 for ReLU
units, Le, Jaitly & Hinton 2015 (IRNN: identity recurrent matrix), Saxe et al. 2014 (orthogonal)
and Zaremba et al. 2014 (uniform ±scale). Factories (``uniform``, ``normal``, ``constant``) take
their setting and return an initializer. ``get_initializer(name, **kwargs)`` picks one by name,
as configs do.

Fans for a weight of shape (..., in, out): a dense matrix (m, n) has fan_in = m and fan_out = n;
a conv kernel (kh, kw, cin, cout) has fan_in = kh·kw·cin and fan_out = kh·kw·cout (every output
unit sees a receptive field of kh·kw positions over cin channels).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from lecturenn.errors import UserError

Initializer = Callable[..., Array]
Shape = Sequence[int]


def fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (..., in, out); a vector has fan_in = fan_out = n."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def glorot_bound(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """b = gain·√6/√(fan_in + fan_out), the half-width of Glorot's uniform distribution."""
    return gain * math.sqrt(6.0 / (fan_in + fan_out))


def glorot_uniform(key: Array, shape: Shape, dtype=jnp.float32, gain: float = 1.0) -> Array:
    """U[-b, b] with b = gain·√6/√(fan_in + fan_out) (Glorot & Bengio 2010; CS224n notes §2.6).

    The variance 2/(fan_in + fan_out) keeps both activation and gradient variances about constant
    from layer to layer for tanh units; gain = 4 is the variant for sigmoid units.
    """
    bound = glorot_bound(*fans(shape), gain=gain)
    return jax.random.uniform(key, tuple(shape), dtype, -bound, bound)


def glorot_uniform_sigmoid(key: Array, shape: Shape, dtype=jnp.float32) -> Array:
    """Glorot uniform with gain 4, for sigmoid units (σ'(0) = 1/4 where tanh'(0) = 1)."""
    return glorot_uniform(key, shape, dtype, gain=4.0)


def glorot_normal(key: Array, shape: Shape, dtype=jnp.float32, gain: float = 1.0) -> Array:
    """N(0, σ²) with σ = gain·√2/√(fan_in + fan_out): Glorot's variance with a Gaussian."""
    fan_in, fan_out = fans(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return std * jax.random.normal(key, tuple(shape), dtype)


def he_normal(key: Array, shape: Shape, dtype=jnp.float32) -> Array:
    """N(0, 2/fan_in) (He et al. 2015): ReLU zeroes half its inputs, so double Var = 1/fan_in."""
    fan_in, _ = fans(shape)
    return math.sqrt(2.0 / fan_in) * jax.random.normal(key, tuple(shape), dtype)


def he_uniform(key: Array, shape: Shape, dtype=jnp.float32) -> Array:
    """U[-b, b] with b = √6/√fan_in: the same variance 2/fan_in as he_normal."""
    fan_in, _ = fans(shape)
    bound = math.sqrt(6.0 / fan_in)
    return jax.random.uniform(key, tuple(shape), dtype, -bound, bound)


def normal_fan_in(key: Array, shape: Shape, dtype=jnp.float32) -> Array:
    """N(0, 1/m) with m = fan_in (MIT 6.036 notes): each pre-activation starts with variance ≈ 1."""
    fan_in, _ = fans(shape)
    return math.sqrt(1.0 / fan_in) * jax.random.normal(key, tuple(shape), dtype)


def uniform(scale: float) -> Initializer:
    """Initializer U[-scale, scale] (Zaremba et al. 2014: 0.1 small, 0.05 medium, 0.04 large)."""

    def init(key: Array, shape: Shape, dtype=jnp.float32) -> Array:
        return jax.random.uniform(key, tuple(shape), dtype, -scale, scale)

    return init


def normal(std: float) -> Initializer:
    """Initializer N(0, std²)."""

    def init(key: Array, shape: Shape, dtype=jnp.float32) -> Array:
        return std * jax.random.normal(key, tuple(shape), dtype)

    return init


def identity(key: Array, shape: Shape, dtype=jnp.float32, scale: float = 1.0) -> Array:
    """scale · I for a square matrix (IRNN, Le et al. 2015: W_hh = I with ReLU units).

    With W_hh = I and zero bias, the recurrence copies the hidden state forward until the inputs
    change it, so gradients neither explode nor vanish at the start of training.
    """
    del key
    shape = tuple(shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise UserError(
            f"the identity initializer needs a square matrix but got shape {shape}; "
            "use it only for the recurrent weight W_hh (hidden × hidden)"
        )
    return scale * jnp.eye(shape[0], dtype=dtype)


def orthogonal(key: Array, shape: Shape, dtype=jnp.float32, gain: float = 1.0) -> Array:
    """A random (semi-)orthogonal matrix (Saxe et al. 2014), times gain.

    The weight is viewed as (prod(shape[:-1]), shape[-1]); the Q factor of a Gaussian matrix,
    with columns' signs fixed by diag(R), is uniformly distributed over orthogonal matrices.
    Rows are orthonormal when there are fewer rows than columns, columns otherwise.
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise UserError(
            f"the orthogonal initializer needs a matrix (2 or more axes) but got shape {shape}; "
            "use zeros or constant for biases"
        )
    return _orthogonal(key, shape, jnp.dtype(dtype), gain)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _orthogonal(key: Array, shape: tuple[int, ...], dtype, gain: float) -> Array:
    # One compiled program instead of one per eager op: initialization runs once per weight.
    rows, cols = math.prod(shape[:-1]), shape[-1]
    # QR in at least float32 (no half-precision QR); float64 stays float64.
    compute_dtype = jnp.promote_types(dtype, jnp.float32)
    a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), compute_dtype)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diag(r))
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dtype)


def zeros(key: Array, shape: Shape, dtype=jnp.float32) -> Array:
    """All zeros (biases; CS224n: "initialize biases to zero")."""
    del key
    return jnp.zeros(tuple(shape), dtype)


def constant(value: float) -> Initializer:
    """Initializer filling every entry with ``value`` (e.g. the LSTM forget-gate bias, 1.0)."""

    def init(key: Array, shape: Shape, dtype=jnp.float32) -> Array:
        del key
        return jnp.full(tuple(shape), value, dtype)

    return init


def output_bias_from_frequencies(
    counts: Sequence[float] | np.ndarray, dtype=jnp.float32, smoothing: float = 0.0
) -> Array:
    """b_k = log p_k with p_k = (counts_k + smoothing) / Σ_j (counts_j + smoothing).

    Starting the softmax output bias at the log class prior (CS224n, Karpathy's "recipe") makes
    the initial prediction the class frequencies, so the first steps do not spend themselves
    learning the prior and the initial loss is the prior's entropy rather than log K.
    """
    counts = np.asarray(counts, np.float64) + smoothing
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
        raise UserError(f"class counts must be a non-empty vector of counts >= 0, got {counts!r}")
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0).tolist()
        raise UserError(
            f"classes {missing} have no examples, so their log frequency is -inf; "
            "pass smoothing > 0 (e.g. 1.0) to output_bias_from_frequencies"
        )
    return jnp.asarray(np.log(counts / counts.sum()), dtype)


_DIRECT: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_uniform_sigmoid": glorot_uniform_sigmoid,
    "glorot_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "normal_fan_in": normal_fan_in,
    "identity": identity,
    "orthogonal": orthogonal,
    "zeros": zeros,
}
_FACTORIES: dict[str, Callable[..., Initializer]] = {
    "uniform": uniform,
    "normal": normal,
    "constant": constant,
}
INITIALIZERS: tuple[str, ...] = (*_DIRECT, *_FACTORIES)
_POSITIONAL = {"key", "shape", "dtype"}


def get_initializer(name: str, **kwargs) -> Initializer:
    """The initializer called ``name`` with its settings bound: ``get_initializer("uniform",
    scale=0.1)``, ``get_initializer("glorot_uniform", gain=2.0)``, ``get_initializer("zeros")``.

    Unknown names, unknown settings and missing settings raise a UserError saying what is valid.
    """
    if name not in INITIALIZERS:
        raise UserError(
            f"unknown initializer {name!r}; use one of: {', '.join(sorted(INITIALIZERS))}"
        )
    target = _FACTORIES.get(name) or _DIRECT[name]
    params = inspect.signature(target).parameters
    settings = [p for p in params if p not in _POSITIONAL]
    unknown = sorted(set(kwargs) - set(settings))
    if unknown:
        allowed = ", ".join(settings) if settings else "none"
        raise UserError(
            f"initializer {name!r} has no setting {', '.join(unknown)}; its settings: {allowed}"
        )
    if name in _FACTORIES:
        missing = [p for p in settings if p not in kwargs]
        if missing:
            raise UserError(f"initializer {name!r} needs the setting {missing[0]} (e.g. 0.1)")
        return target(**kwargs)
    return functools.partial(target, **kwargs) if kwargs else target
