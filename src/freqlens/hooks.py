"""Forward hooks on named layers: select layers, capture what flows through them, trace shapes.

Shared by every measurement that looks inside a user's ``nn.Module`` (activation spectra, decoder
reports). Hooks are always removed, also when the forward pass raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "LayerForwardError",
    "LayerTrace",
    "capture_layers",
    "evaluation_mode",
    "layer_modules",
    "preserve_state",
    "restore_modes",
    "select_layers",
    "trace_layers",
]

ForwardCallback = Callable[[str, nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]


@contextmanager
def restore_modes(model: nn.Module) -> Iterator[None]:
    """Put back every sub-module's own ``training`` flag on exit (plumbing).

    ``model.train(was_training)`` is not enough: it sets *all* sub-modules to one mode, so a frozen eval
    BatchNorm inside a model in train mode would come back in train mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Run a measurement in eval mode and leave ``model`` exactly as it was (plumbing).

    Eval mode is what makes a measurement read-only: BatchNorm does not update its running statistics and
    ``spectral_norm`` does not advance its power iteration when its weight is read. Each sub-module's own
    flag is restored on exit (:func:`restore_modes`), also when the body raises.
    """
    with restore_modes(model):
        model.eval()
        yield


@contextmanager
def preserve_state(model: nn.Module | Sequence[tuple[str, nn.Module]]) -> Iterator[None]:
    """Run a measurement in the model's own modes but leave every buffer (BatchNorm running statistics,
    spectral-norm power-iteration vectors) and every training flag exactly as found (plumbing).

    ``model`` is a module or a list of ``(name, module)`` layers. Buffers are copied before and written back
    on exit, also when the body raises.
    """
    modules = [model] if isinstance(model, nn.Module) else [m for _, m in model]
    saved = [(b, b.detach().clone()) for m in modules for b in m.buffers()]
    modes = [(m, m.training) for top in modules for m in top.modules()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                if not buf.is_meta:
                    buf.copy_(value)
        for m, mode in modes:
            m.training = mode


class LayerForwardError(RuntimeError):
    """The model's forward pass failed; the message names the innermost layer that was running."""


def select_layers(
    model: nn.Module,
    names: Sequence[str] | None = None,
    types: tuple[type[nn.Module], ...] | None = None,
) -> list[tuple[str, nn.Module]]:
    """Named sub-modules of ``model`` in definition order.

    ``names``: exact qualified names (as in ``model.named_modules()``); an unknown name raises a
    ``ValueError`` listing valid ones. ``types``: keep modules of these classes. With both, a named
    layer of another type raises a ``TypeError`` naming it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if names is not None:
        missing = [n for n in names if n not in modules]
        if missing:
            valid = [n for n in modules if n][:30]
            raise ValueError(f"layers {missing} not found in the model; valid names include {valid}")
        chosen = [(n, modules[n]) for n in names]
        if types is not None:
            for n, m in chosen:
                if not isinstance(m, types):
                    allowed = ", ".join(t.__name__ for t in types)
                    raise TypeError(f"layer {n!r} is {type(m).__name__}; expected one of: {allowed}")
        return chosen
    return [(n, m) for n, m in modules.items() if n and (types is None or isinstance(m, types))]


@contextmanager
def capture_layers(layers: Sequence[tuple[str, nn.Module]], callback: ForwardCallback) -> Iterator[None]:
    """Call ``callback(name, module, inputs, output)`` after each forward of the given layers."""
    handles = []
    try:
        for name, module in layers:

            def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, _name: str = name) -> None:
                callback(_name, mod, inputs, output)

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class LayerTrace:
    """One layer call seen during a traced forward pass (shapes exclude nothing: ``(N, C, H, W)``)."""

    name: str
    module_type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _is_leaf(module: nn.Module) -> bool:
    """A module without sub-modules, or whose only sub-modules are ``torch.nn.utils.parametrize``
    parametrizations (a parametrized conv is still one layer)."""
    return all(name == "parametrizations" for name, _ in module.named_children())


def layer_modules(
    model: nn.Module, is_layer: Callable[[nn.Module], bool] | None = None, prefix: str = ""
) -> list[tuple[str, nn.Module]]:
    """The layers of ``model`` in definition order with qualified names: modules for which ``is_layer`` is
    true (not descended into) and leaf modules (parametrized modules count as leaves). The one static layer
    walk of freqlens (plumbing); call order is seen with :func:`capture_layers`."""
    if (prefix and is_layer is not None and is_layer(model)) or _is_leaf(model):
        return [(prefix or type(model).__name__, model)]
    out: list[tuple[str, nn.Module]] = []
    for child_name, child in model.named_children():
        if child_name == "parametrizations":
            continue
        out += layer_modules(child, is_layer, f"{prefix}.{child_name}" if prefix else child_name)
    return out


def trace_layers(model: nn.Module, example: torch.Tensor) -> list[LayerTrace]:
    """Run one forward pass (no grad) and record input/output shapes of every leaf module (parametrized
    modules count as leaves), in call order.

    If the forward pass fails, raises :class:`LayerForwardError` naming the innermost layer running.
    """
    stack: list[str] = []
    seen: list[LayerTrace] = []
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def pre(mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        stack.append(names.get(mod, type(mod).__name__))

    def post(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        name = stack.pop() if stack else names.get(mod, "?")
        inside_parametrization = "parametrizations." in name  # the weight transform, not a layer
        if _is_leaf(mod) and not inside_parametrization and isinstance(output, torch.Tensor) and inputs:
            first = inputs[0]
            shape_in = tuple(first.shape) if isinstance(first, torch.Tensor) else ()
            seen.append(LayerTrace(name, type(mod).__name__, shape_in, tuple(output.shape)))

    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    try:
        with torch.no_grad():
            model(example)
    except Exception as exc:  # name the failing layer, keep the original as the cause
        where = stack[-1] if stack else "<model>"
        raise LayerForwardError(
            f"forward pass failed in layer {where!r} with input of shape {tuple(example.shape)}: {exc}"
        ) from exc
    finally:
        for h in handles:
            h.remove()
    return seen
