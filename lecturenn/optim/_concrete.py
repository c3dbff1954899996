"""Hyper-parameters may be Python numbers or traced arrays (a vmapped sweep over learning rates
or L2 strengths): range checks and on/off decisions apply to numbers only."""

from __future__ import annotations

import numbers


def is_concrete(value) -> bool:
    """True for a plain Python/NumPy number, False for arrays and tracers."""
    return isinstance(value, numbers.Number)
