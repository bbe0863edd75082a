"""Argument checks shared by every layer.

Every public entry point validates its inputs *before* any long computation and raises a
``ValueError`` (or ``TypeError``) that names the argument and says what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def describe(x: Any) -> str:
    """A short description of ``x`` for error messages: type, shape and dtype."""
    if isinstance(x, torch.Tensor):
        return f"torch.Tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(x, np.ndarray):
        return f"numpy array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def check_tensor_like(name: str, x: Any) -> None:
    """Raise ``TypeError`` unless ``x`` is a NumPy array or a torch tensor (plumbing)."""
    if not isinstance(x, np.ndarray | torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {describe(x)}")


def check_ndim(name: str, x: ArrayLike, allowed: Sequence[int], layout: str) -> None:
    """Raise unless ``x.ndim`` is in ``allowed``; ``layout`` describes the expected axes."""
    check_tensor_like(name, x)
    if x.ndim not in allowed:
        raise ValueError(f"{name} must have shape {layout}, got {describe(x)}")


def check_real_floating(name: str, x: ArrayLike, allow_integer: bool = False) -> None:
    """Reject complex, boolean and (unless allowed) integer arrays."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise ValueError(f"{name} must be real, got complex dtype {x.dtype}")
        if x.dtype == torch.bool:
            raise ValueError(f"{name} must be a floating-point tensor, got dtype torch.bool")
        if not x.is_floating_point() and not allow_integer:
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    else:
        if np.iscomplexobj(x):
            raise ValueError(f"{name} must be real, got complex dtype {x.dtype}")
        if x.dtype == np.bool_ or x.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype}")
        if x.dtype.kind in "iu" and not allow_integer:
            raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype}")


def check_finite(name: str, x: ArrayLike) -> None:
    """Raise unless every entry of ``x`` is finite (no NaN, no ±inf) (plumbing)."""
    finite = bool(torch.isfinite(x).all()) if isinstance(x, torch.Tensor) else bool(np.isfinite(x).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or infinite values")


def check_square(name: str, x: ArrayLike) -> None:
    """Raise unless the last two axes of ``x`` are equal (square images, H == W) (plumbing)."""
    h, w = x.shape[-2], x.shape[-1]
    if h != w:
        raise ValueError(f"{name} must hold square images (H == W) for this computation, got H={h}, W={w}")


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) >= ``minimum``, else raise (plumbing)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise unless ``value`` is one of ``choices`` (plumbing)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_integer_labels(name: str, labels: ArrayLike, num_classes: int | None) -> np.ndarray:
    """Validate class labels and return them as an int64 numpy array."""
    check_tensor_like(name, labels)
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer class labels, got {describe(labels)}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must have an integer dtype, got {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0, got minimum {int(arr.min())}")
    if num_classes is not None and arr.size and arr.max() >= num_classes:
        raise ValueError(
            f"{name} must lie in [0, {num_classes - 1}] for num_classes={num_classes}, got maximum {int(arr.max())}"
        )
    return arr.astype(np.int64, copy=False)


def check_model_usable(name: str, model: Any) -> None:
    """A ``torch.nn.Module`` whose parameters and buffers hold real, finite numbers.

    Rejects meta-device tensors (no data to measure) and NaN/Inf weights before any LAPACK call, naming
    the offending tensor.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {describe(model)}")
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for tname, t in tensors:
        if t.is_meta:
            raise ValueError(
                f"{name} has tensor {tname!r} on the meta device (no values); load real weights "
                "(e.g. model.to_empty(device='cpu') then load_state_dict) before measuring it"
            )
    for tname, t in tensors:
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t.detach()).all()):
            raise ValueError(f"{name} has NaN or infinite values in {tname!r}")


def check_float_dtype(name: str, dtype: Any) -> torch.dtype:
    """A real floating torch dtype (``torch.float16/bfloat16/float32/float64``); integer, boolean and complex
    dtypes would silently turn values in [0, 1] into zeros or change their meaning."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be a torch floating dtype such as torch.float32, got {dtype!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating dtype (torch.float32 or torch.float64), got {dtype}")
    return dtype
