"""The one adapter between the front door and freqlens' measurement API, on the layer-rule registry.

Every call to the rule registry (:mod:`freqlens.spectral.rules`: ``rule_for``, ``verify_forward``, each rule's
``check_spectrum_geometry`` / ``layer_spectrum``), ``activation_spectra``, ``estimate_cbn_rank`` and
``decoder_report`` made by :mod:`freqlens.report` lives here. The report keeps no table of layer types of its
own: the rule of each module decides its geometry, its exactness and its per-frequency values, and the
``LayerSpectrum`` it returns names the operator they describe (``circular: exact``, ``zero padding: circulant
embedding, upper bound``, ``<kind>: exact`` for a user-registered rule, ...). A functional ``F.convNd`` call
found by the torch function mode is measured as the ``nn.ConvNd`` that computes it (same weight, stride,
padding, dilation, groups), so the same rules apply. Each per-layer measurement catches its own error and
returns a row marked ``skipped: <reason>`` (``strict=True`` re-raises instead).

What the registry does not give is computed here:

* **the true operator norm** ``‖A‖₂ = σ_max(A)`` of the layer's linear part at the real input size, by
  Lanczos iteration on ``AᵀA`` (ARPACK, :func:`scipy.sparse.linalg.eigsh`) whose products ``Av`` and
  ``Aᵀu`` go through the layer's own forward and autograd (:func:`exact_operator_norm`);
* for small layers (``<= DENSE_MAX_INPUTS`` inputs) **all true singular values** from the dense operator
  ``A = [f(e_1) ... f(e_n)]`` (:func:`dense_singular_values`).
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse.linalg as sla
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from tqdm.auto import tqdm

from ..analysis import decoder_report, estimate_cbn_rank
from ..fourier import low_frequency_mask, signed_frequencies, spatial_grid
from ..hooks import evaluation_mode
from ..spectral import LayerSpectrum, activation_spectra, rule_for
from ..spectral.maps import radial_bin_scale, radial_frequency, radial_profile
from ..spectral.rules import verify_forward

__all__ = [
    "DENSE_MAX_ENTRIES",
    "DENSE_MAX_INPUTS",
    "ConvCall",
    "LayerMeasurement",
    "activation_rows",
    "cbn_ranks",
    "decoder_summary",
    "dense_singular_values",
    "discover_convs",
    "exact_operator_norm",
    "functional_conv_module",
    "measure_weights",
    "radial_maximum",
    "rule_spectrum",
    "signed_frequency_labels",
    "spectrum_status",
]

#: Dense true singular values are computed for layers with at most this many inputs ...
DENSE_MAX_INPUTS = 4096
#: ... and a dense operator of at most this many entries (8 MiB in float64; its SVD takes seconds).
DENSE_MAX_ENTRIES = 2**20

# functional conv -> (the module computing it, its positional argument names after ``input``)
_CONV_ARGS = ("weight", "bias", "stride", "padding", "dilation", "groups")
_TRANSPOSED_ARGS = ("weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
_CONV_FUNCS: dict[Any, tuple[str, type[nn.Module], tuple[str, ...]]] = {
    torch.conv1d: ("conv1d", nn.Conv1d, _CONV_ARGS),
    torch.conv2d: ("conv2d", nn.Conv2d, _CONV_ARGS),
    torch.conv3d: ("conv3d", nn.Conv3d, _CONV_ARGS),
    torch.conv_transpose1d: ("conv_transpose1d", nn.ConvTranspose1d, _TRANSPOSED_ARGS),
    torch.conv_transpose2d: ("conv_transpose2d", nn.ConvTranspose2d, _TRANSPOSED_ARGS),
    torch.conv_transpose3d: ("conv_transpose3d", nn.ConvTranspose3d, _TRANSPOSED_ARGS),
}
_UPSAMPLE_FUNCS = {F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _has_weight_rule(module: nn.Module | None) -> bool:
    """The registry gives ``module`` per-frequency weight singular values (``SpectralRule.has_weights``)."""
    return module is not None and rule_for(module)[1].has_weights


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape[1:]) if isinstance(t, torch.Tensor) else ()


# --------------------------------------------------------------------------------------------- discovery
@dataclass
class ConvCall:
    """One conv seen in the forward pass (plumbing): a module (a registered weight-rule type, or a conv
    module such as ``nn.Conv1d`` whose rule is a declared gap), or a functional ``F.convNd`` call made inside
    the ``forward`` of ``owner``; for those ``module`` is :func:`functional_conv_module` of the call. Shapes
    exclude the batch axis."""

    name: str
    owner: str
    op: str
    functional: bool
    module: nn.Module
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    calls: int = 1

    @property
    def hookable(self) -> bool:
        """A module of the user's model whose output has a per-frequency activation spectrum (a registered
        weight rule): what ``activation_spectra`` and the tracker measure (plumbing)."""
        return not self.functional and _has_weight_rule(self.module)


@dataclass
class Discovery:
    """What one traced forward pass saw (plumbing)."""

    convs: list[ConvCall] = field(default_factory=list)
    upsamples: bool = False


def functional_conv_module(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> nn.Module:
    """The ``nn.ConvNd`` / ``nn.ConvTranspose{N}d`` whose forward is the linear part (bias dropped) of the call
    ``func(input, *args, **kwargs)`` of a ``torch.convNd`` function, holding the call's weight (detached, not
    copied) (plumbing). Built on the meta device first, so no random initialisation touches the global RNG."""
    _, cls, names = _CONV_FUNCS[func]
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k != "input"})
    weight = bound["weight"].detach()
    groups = int(bound.get("groups", 1))
    transposed = "output_padding" in names
    if transposed:  # PyTorch layouts: (c_in, c_out / g, ...) transposed, (c_out, c_in / g, ...) otherwise
        cin, cout = weight.shape[0], weight.shape[1] * groups
    else:
        cin, cout = weight.shape[1] * groups, weight.shape[0]
    options: dict[str, Any] = {
        "stride": bound.get("stride", 1),
        "padding": bound.get("padding", 0),
        "dilation": bound.get("dilation", 1),
        "groups": groups,
        "bias": False,
        "device": "meta",
    }
    if transposed:
        options["output_padding"] = bound.get("output_padding", 0)
    twin = cls(int(cin), int(cout), tuple(int(k) for k in weight.shape[2:]), **options)
    twin.weight = nn.Parameter(weight, requires_grad=False)
    return twin.eval()


class _ConvSpy(TorchFunctionMode):
    """Sees every ``F.conv*`` and ``F.interpolate`` call, also those made inside a module's ``forward``."""

    def __init__(self, stack: list[tuple[str, nn.Module, tuple[int, ...]]], found: Discovery) -> None:
        super().__init__()
        self.stack = stack
        self.found = found
        self.seen: dict[tuple[Any, ...], ConvCall] = {}
        self.functional_count: dict[str, int] = {}

    def add(self, key: tuple[Any, ...], call: ConvCall) -> None:
        """Record a new conv, or count one more call of a known one (plumbing)."""
        if key in self.seen:
            self.seen[key].calls += 1
        else:
            self.seen[key] = call
            self.found.convs.append(call)

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _UPSAMPLE_FUNCS:
            self.found.upsamples = True
        entry = _CONV_FUNCS.get(func)
        if entry is None or not args or not isinstance(out, torch.Tensor):
            return out
        op = entry[0]
        owner, module, module_in = self.stack[-1] if self.stack else ("", None, ())
        if _has_weight_rule(module):
            return out  # the module's own computation: its row comes from the module hooks
        x = args[0]
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        assert isinstance(weight, torch.Tensor)
        # a conv module without a weight rule (nn.Conv1d, nn.Conv3d, ...) is still a row of its own
        is_module_conv = isinstance(module, nn.modules.conv._ConvNd) and tuple(weight.shape) == tuple(
            module.weight.shape
        )
        if is_module_conv:
            assert module is not None
            call = ConvCall(owner, owner, op, False, module, module_in, _shape(out), tuple(weight.shape), weight.device)
            self.add((owner, module_in, id(module)), call)
            return out
        index = self.functional_count.get(owner, 0)
        self.functional_count[owner] = index + 1
        name = f"{owner or '<model>'}:F.{op}#{index}"
        twin = functional_conv_module(func, args[1:], kwargs)
        call = ConvCall(name, owner, op, True, twin, _shape(x), _shape(out), tuple(weight.shape), weight.device)
        self.add((name, _shape(x)), call)
        return out


def discover_convs(model: nn.Module, example: torch.Tensor) -> Discovery:
    """Every conv of ``model`` in call order (plumbing): modules whose registered rule has weights (by module
    hooks), conv modules without such a rule, and functional ``F.conv*`` calls inside any ``forward`` (by a
    ``torch.overrides.TorchFunctionMode``), one entry per distinct (layer, input shape); also whether anything
    upsamples. Runs one no-grad forward pass in eval mode; the model is left exactly as found."""
    stack: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    found = Discovery()
    spy = _ConvSpy(stack, found)
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def pre(mod: nn.Module, inputs: tuple[Any, ...]) -> None:
        name = names.get(mod, type(mod).__name__)
        shape = _shape(inputs[0]) if inputs else ()
        stack.append((name, mod, shape))
        if _has_weight_rule(mod):
            weight = getattr(mod, "weight", None)
            w_shape = tuple(int(s) for s in weight.shape) if isinstance(weight, torch.Tensor) else ()
            device = next((t.device for t in mod.parameters()), torch.device("cpu"))
            call = ConvCall(name, name, rule_for(mod)[1].kind, False, mod, shape, (), w_shape, device)
            spy.add((name, shape, id(mod)), call)

    def post(mod: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        name, _, shape = stack.pop() if stack else ("", mod, ())
        call = spy.seen.get((name, shape, id(mod)))
        if call is not None and not call.output_shape:
            call.output_shape = _shape(output)
        first = inputs[0] if inputs else None
        if (
            isinstance(first, torch.Tensor)
            and isinstance(output, torch.Tensor)
            and first.ndim == output.ndim >= 3
            and math.prod(output.shape[2:]) > math.prod(first.shape[2:])
        ):
            found.upsamples = True

    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    try:
        with evaluation_mode(model), torch.no_grad(), spy:
            model(example)
    finally:
        for h in handles:
            h.remove()
    return found


# --------------------------------------------------------------------------------------------- exact operator
def _linear_part(call: ConvCall) -> Callable[[torch.Tensor], torch.Tensor]:
    """The layer's linear part in float64 on a private copy (bias zeroed; the user's module is untouched)."""
    twin = copy.deepcopy(call.module).to(torch.float64)
    with torch.no_grad():
        bias = getattr(twin, "bias", None)
        if isinstance(bias, torch.Tensor):
            bias.zero_()
    twin.eval()
    return twin


def exact_operator_norm(
    forward: Callable[[torch.Tensor], torch.Tensor],
    input_shape: Sequence[int],
    device: torch.device | str = "cpu",
    tol: float = 1e-13,
    maxiter: int = 2000,
) -> float:
    """True operator norm ``‖A‖₂ = sqrt(λ_max(AᵀA))`` of a **linear** map ``forward`` on inputs of shape
    ``input_shape`` (no batch axis): Lanczos (ARPACK ``eigsh``) on ``AᵀA``, with ``Av = forward(v)`` and
    ``Aᵀu`` by autograd (``torch.autograd.grad`` of ``⟨forward(x), u⟩``), in float64. This is the exact
    operator of the layer (its real padding, stride and crop), not a model of it."""
    shape = (1, *(int(s) for s in input_shape))
    n = math.prod(shape)
    dev = torch.device(device)

    def gram(v: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).reshape(shape).to(dev).requires_grad_(True)
        with torch.enable_grad():
            y = forward(x)
            (g,) = torch.autograd.grad(y, x, grad_outputs=y.detach())  # Aᵀ(Av)
        return g.detach().reshape(-1).cpu().numpy()

    if n == 1:
        return float(math.sqrt(max(gram(np.ones(1))[0], 0.0)))
    op = sla.LinearOperator((n, n), matvec=gram, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n)  # fixed start: same numbers every run
    lam = sla.eigsh(op, k=1, which="LA", tol=tol, maxiter=maxiter, v0=v0, return_eigenvectors=False)
    return float(math.sqrt(max(float(lam[0]), 0.0)))


def dense_singular_values(
    forward: Callable[[torch.Tensor], torch.Tensor], input_shape: Sequence[int], device: torch.device | str = "cpu"
) -> np.ndarray:
    """All singular values (descending, float64) of the dense operator ``A = [forward(e_1) ... forward(e_n)]``
    of a linear map on inputs of shape ``input_shape``: the true spectrum for small layers."""
    shape = tuple(int(s) for s in input_shape)
    n = math.prod(shape)
    cols = []
    with torch.no_grad():
        for start in range(0, n, 512):
            eye = torch.zeros(min(512, n - start), n, dtype=torch.float64, device=device)
            eye[torch.arange(eye.shape[0]), torch.arange(start, start + eye.shape[0])] = 1.0
            cols.append(forward(eye.reshape(-1, *shape)).reshape(eye.shape[0], -1).cpu())
    dense = torch.cat(cols).T.numpy()
    return np.linalg.svd(dense, compute_uv=False)


# --------------------------------------------------------------------------------------------- weights
@dataclass
class LayerMeasurement:
    """One weight-table row (JSON-ready ``row``) and its arrays (plumbing)."""

    row: dict[str, Any]
    singular_values: np.ndarray | None = None
    dense_singular_values: np.ndarray | None = None


def rule_spectrum(call: ConvCall) -> LayerSpectrum:
    """Per-frequency singular values of one conv by its registered rule (conv_bottleneck §1.3-1.5, §5a; the
    rule's ``layer_spectrum``), as ``weight_spectra`` computes them: a module whose ``forward`` overrides its
    registered type is first verified on a float64 probe (``verify_forward``, linear part), then the rule
    checks the geometry before any FFT. Raises ``ValueError`` / ``TypeError`` naming the reason otherwise."""
    rule = rule_for(call.module)[1]
    form, reason = verify_forward(call.module, call.input_shape, linear_only=True)
    if form is None:  # an unverified forward is a marked gap, whatever its attributes say
        raise ValueError(reason)
    spatial, out_spatial = call.input_shape[1:], call.output_shape[1:]
    if len(spatial) in (1, 2):  # (L,) of a 1-D layer is the 1xL grid (freqlens.fourier.spatial_grid)
        size = spatial_grid("input_size", spatial)
        out = spatial_grid("output_size", out_spatial) if len(out_spatial) == len(spatial) else None
    else:  # other dimensions: the rule's own gap (e.g. Conv3d) gives the reason
        size, out = (int(spatial[-2]), int(spatial[-1])) if len(spatial) >= 2 else (1, 1), None
    rule.check_spectrum_geometry(call.module, call.name, size)
    return rule.layer_spectrum(call.module, size, call.name, out, torch.float64)


def spectrum_status(spec: LayerSpectrum) -> str:
    """``exact``, ``upper bound`` or ``approximate``: the status column of a measured row, read from the
    rule's own verdict (``LayerSpectrum.exact`` and its ``operator`` label) (plumbing)."""
    if spec.exact:
        return "exact"
    return "upper bound" if "upper bound" in spec.operator else "approximate"


_ATTRIBUTE_COLUMNS = ("padding", "padding_mode", "stride", "dilation", "groups")


def _base_row(call: ConvCall) -> dict[str, Any]:
    row: dict[str, Any] = {
        "layer": call.name,
        "owner": call.owner,
        "type": f"F.{call.op}" if call.functional else type(call.module).__name__,
        "op": call.op,
        "functional": call.functional,
        "calls": call.calls,
        "input_shape": list(call.input_shape),
        "output_shape": list(call.output_shape),
        "weight_shape": list(call.weight_shape),
    }
    for attr in _ATTRIBUTE_COLUMNS:  # descriptive only (user layers may have none of them)
        value = getattr(call.module, attr, None)
        row[attr] = list(value) if isinstance(value, tuple) else value if isinstance(value, int | str) else None
    return row


def _measure_one(
    call: ConvCall, exact_norms: bool, dense: bool, strict: bool, kept_threshold: float
) -> LayerMeasurement:
    row = _base_row(call)
    row.update(
        operator=None,
        status=None,
        exact=False,
        reason=None,
        note=None,
        grid=None,
        values=0,
        bound_norm=None,
        operator_norm=None,
        operator_norm_method=None,
        true_values=None,
        weight_kept=None,
    )
    sv: np.ndarray | None = None
    try:
        spec = rule_spectrum(call)
    except Exception as exc:
        if strict:
            raise
        reason = _one_line(exc)
        row.update(operator=f"skipped: {reason}", status="skipped", reason=reason)
    else:
        sv = spec.singular_values
        row.update(
            operator=spec.operator,
            status=spectrum_status(spec),
            exact=bool(spec.exact),
            note=spec.note,
            grid=list(spec.grid),
            values=int(sv.size),
            bound_norm=float(sv.max()) if sv.size else 0.0,
            weight_kept=int((sv > kept_threshold).sum()),
        )
        if spec.exact:
            row.update(operator_norm=row["bound_norm"], operator_norm_method="per-frequency spectrum (exact)")
    dense_sv: np.ndarray | None = None
    if exact_norms and not row["exact"]:
        try:
            forward = _linear_part(call)
            device = call.device
            n_in, n_out = math.prod(call.input_shape), math.prod(call.output_shape)
            if dense and n_in <= DENSE_MAX_INPUTS and n_in * n_out <= DENSE_MAX_ENTRIES:
                dense_sv = dense_singular_values(forward, call.input_shape, device)
                row["true_values"] = int(min(n_in, n_out))
            row["operator_norm"] = exact_operator_norm(forward, call.input_shape, device)
            row["operator_norm_method"] = "Lanczos on AᵀA through the layer's forward and autograd (true operator)"
        except Exception as exc:
            if strict:
                raise
            row["operator_norm_method"] = f"failed: {_one_line(exc)}"
    return LayerMeasurement(row, sv, dense_sv)


def measure_weights(
    calls: Sequence[ConvCall],
    *,
    exact_norms: bool = True,
    dense: bool = True,
    strict: bool = False,
    kept_threshold: float = 0.5,
    progress: bool = True,
) -> list[LayerMeasurement]:
    """Per-layer weight spectra (conv_bottleneck §1.3, §1.5, §5a via ``layer_spectrum``), each row labelled
    with the operator it describes, plus the true operator norm (and for small layers the true singular
    values) wherever the per-frequency values are not exact. A layer that cannot be measured becomes a row
    ``skipped: <reason>``; ``strict=True`` raises its error instead."""
    bar = tqdm(calls, desc="weight spectra", unit="layer", disable=not progress, file=sys.stderr, leave=False)
    return [_measure_one(c, exact_norms, dense, strict, kept_threshold) for c in bar]


# --------------------------------------------------------------------------------------------- activations
def activation_rows(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    names: Sequence[str],
    *,
    batch_size: int,
    low_fraction: float,
    eps: float,
    strict: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, np.ndarray]], str | None]:
    """Activation spectra of the named 2-D conv modules streamed over ``batches`` (conv_bottleneck §5b, C8),
    and per layer the pooled power map ``P(ω) = Σ_j ς²_{ω,j}``, its energy by radial frequency
    (decoder_spectra §4 item 7 bins) and ``p_low = Σ_{Ω_low} P / Σ P`` (pooled over images).

    Returns ``(row fields by layer, arrays by layer, error)``; on failure the error names the reason and the
    dicts are empty (``strict=True`` raises instead)."""
    if not names:
        return {}, {}, None
    try:
        with evaluation_mode(model):
            spectra = activation_spectra(model, batches, layers=list(names), batch_size=batch_size)
    except Exception as exc:
        if strict:
            raise
        return {}, {}, _one_line(exc)
    fields: dict[str, dict[str, Any]] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for layer in spectra.layers:
        power = (layer.singular_values**2).sum(axis=-1)
        centres, energy = radial_profile(power)
        total = float(power.sum())
        low = float(power[low_frequency_mask(layer.grid, low_fraction)].sum())
        fields[layer.name] = {
            "act_grid": list(layer.grid),
            "act_images": int(layer.num_samples),
            "act_kept": int(layer.count_at_energy(eps)),
            "p_low": low / total if total > 0 else None,
            "parseval_rel_error": float(layer.parseval_rel_error),
        }
        arrays[layer.name] = {"act_sv": layer.singular_values, "radial_centres": centres, "radial_energy": energy}
    return fields, arrays, None


def signed_frequency_labels(n: int) -> np.ndarray:
    """The one signed-frequency convention of every table: ``freqlens.fourier.signed_frequencies`` (FFT order,
    labels in ``(-n/2, n/2]``, spec README convention 3)."""
    return signed_frequencies(n)


def radial_maximum(values: np.ndarray) -> np.ndarray:
    """Largest value of an unshifted ``(H, W)`` map per radial-frequency bin (the bins of ``radial_profile``,
    width ``1/radial_bin_scale``; decoder_spectra §4 item 7): which frequencies a layer passes most."""
    h, w = values.shape
    idx = np.rint(radial_frequency((h, w)) * radial_bin_scale((h, w))).astype(np.int64)
    out = np.zeros(int(idx.max()) + 1)
    np.maximum.at(out, idx.reshape(-1), values.reshape(-1))
    return out


# --------------------------------------------------------------------------------------------- CBN, decoder
def cbn_ranks(
    weight_spectra: Sequence[np.ndarray],
    activation_spectra_: Sequence[np.ndarray],
    *,
    threshold: float,
    eps: float,
    strict: bool = False,
) -> dict[str, Any]:
    """CBN rank across depth (conv_bottleneck §5a.3-4 for weights with ``s > threshold``, §5b.4 for
    activations with ``1 − eps`` of the energy) via ``estimate_cbn_rank``; a part that cannot be estimated
    says why."""
    out: dict[str, Any] = {}
    for key, spectra, kwargs in (
        ("weights", weight_spectra, {"threshold": threshold}),
        ("activations", activation_spectra_, {"threshold": None, "eps": eps}),
    ):
        if not spectra:
            out[key] = {"skipped": "no measured layer"}
            continue
        try:
            out[key] = estimate_cbn_rank(list(spectra), **kwargs).as_dict()
        except Exception as exc:
            if strict:
                raise
            out[key] = {"skipped": _one_line(exc)}
    return out


def decoder_summary(
    model: nn.Module, batches: Iterable[torch.Tensor], *, batch_size: int, strict: bool = False
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``decoder_report`` (decoder_spectra §2, §4 items 1, 7, 11) of an upsampling model, run in eval mode:
    ``({"layers": summaries, "images": n}, arrays)`` or ``({"skipped": reason}, {})``."""
    try:
        with evaluation_mode(model):
            rep = decoder_report(model, batches, batch_size=batch_size)
    except Exception as exc:
        if strict:
            raise
        return {"skipped": _one_line(exc)}, {}
    return {"layers": rep.summary(), "images": rep.num_images}, rep.to_arrays(prefix="decoder_")
