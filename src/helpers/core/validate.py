"""Argument checks shared by every public helper.

Each check raises ``TypeError`` or ``ValueError`` with a one-line message that names the parameter and
says what is accepted, before any heavy work starts.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real
from typing import Any

import numpy as np


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: must be <= {maximum}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number, got {value}")
    if minimum is not None:
        if strict_minimum and value <= minimum:
            raise ValueError(f"{name}: must be > {minimum}, got {value}")
        if not strict_minimum and value < minimum:
            raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: must be <= {maximum}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Collection[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, one of {sorted(choices)}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name}: unknown value {value!r}; known: {', '.join(sorted(choices))}")
    return value


def check_images(name: str, images: Any, *, value_range: tuple[float, float] | None = (0.0, 1.0)) -> np.ndarray:
    """A float32 NHWC batch, finite and (optionally) inside ``value_range``."""
    try:
        array = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: expected a numeric array of images, got {type(images).__name__}") from error
    if array.ndim != 4:
        raise ValueError(f"{name}: expected a 4-D batch (N, H, W, C), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name}: the batch is empty (shape {array.shape})")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if value_range is not None:
        low, high = value_range
        if array.min() < low - 1e-6 or array.max() > high + 1e-6:
            raise ValueError(
                f"{name}: values must lie in [{low}, {high}], got [{array.min():.4g}, {array.max():.4g}]"
            )
    return array


def check_labels(name: str, labels: Any, *, length: int, num_classes: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(f"{name}: expected {length} labels in a 1-D array, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.equal(np.mod(array, 1), 0)):
            raise TypeError(f"{name}: expected integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(f"{name}: class indices must lie in [0, {num_classes - 1}], got [{array.min()}, {array.max()}]")
    return array
