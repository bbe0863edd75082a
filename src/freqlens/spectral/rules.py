"""The layer-rule registry: one rule object per layer type, holding all freqlens knows about it.

Modelled on BackPACK's one-extension-per-module-type tables. A :class:`SpectralRule` says, for one layer
type, what its operator does to each frequency: its validity checks (:meth:`SpectralRule.assess`,
:meth:`SpectralRule.check_spectrum_geometry`), its per-frequency blocks and singular values
(:meth:`SpectralRule.operator_blocks`, :meth:`SpectralRule.layer_spectrum`; conv_bottleneck §1.3-1.5) and
its propagation rule on spectrum maps (:meth:`SpectralRule.propagate`; decoder_spectra §2). The walkers
``weight_spectra``, ``activation_spectra``, ``propagate`` and ``decoder_report`` only look rules up here.

* :func:`register_rule` teaches freqlens a user's layer type (see :class:`TransferRule` for the common
  case of a same-size layer with a per-frequency matrix).
* :func:`rule_for` finds the rule of a module by its type's MRO (nearest registered base class).
* :func:`layer_verdict` is the honest answer for one module: a subclass that overrides ``forward`` or a
  module that carries a parametrization is run once on a random float64 probe and compared with the rule's
  own forward (cached per module, weight version and input shape); it is exact only if they agree to
  ``1e-10`` relative, otherwise the verdict is a marked gap naming the reason.

Declared gaps (rules with no prediction): pointwise nonlinearities, batch norm in training mode, bilinear /
bicubic upsampling, reflect / replicate padding, transposed convs with ``K − 2P ≠ s``, Conv3d and
ConvTranspose3d (3-D frequency grids are not implemented: :func:`_conv3d_gap`), pooling and any unregistered
module.

``nn.Conv1d`` and ``nn.ConvTranspose1d`` follow the 2-D rules by delegation (:class:`Conv1dRule`,
:class:`ConvTranspose1dRule`): each is its 2-D twin on the ``1×L`` grid
(:func:`freqlens.spectral.conv.conv1d_as_conv2d`), so its frequencies are labelled ``(0, k)``
(:func:`freqlens.fourier.spatial_grid`).
"""

from __future__ import annotations

import copy
import dataclasses
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..fourier import spatial_grid
from .conv import (
    conv1d_as_conv2d,
    conv_geometry,
    padding_rule_gap,
    spectrum_grid_problem,
    transposed_rule_gap,
)
from .propagation import (
    LayerRule,
    NoExactRuleError,
    ZeroInsertionUpsample,
    add_dc_bias,
    apply_transfer,
    batchnorm_spectrum,
    check_spectrum,
    conv2d_spectrum,
    conv_transpose2d_spectrum,
    upsample_factor,
    upsample_spectrum,
)
from .weights import (
    LayerSpectrum,
    layer_operator_blocks,
    layer_spectrum,
    singular_values_by_frequency,
)

__all__ = [
    "BatchNorm2dRule",
    "Conv1dRule",
    "Conv2dRule",
    "ConvTranspose1dRule",
    "ConvTranspose2dRule",
    "GapRule",
    "IdentityRule",
    "LayerRule",
    "NoExactRuleError",
    "SpectralRule",
    "TransferRule",
    "UpsampleRule",
    "layer_verdict",
    "register_rule",
    "registered_rules",
    "rule_for",
    "unregister_rule",
    "verify_forward",
]

#: Relative agreement a verified forward must reach (issue 10): ``max|f(x) − rule(x)| <= 1e-10 max|rule(x)|``.
VERIFY_RTOL = 1e-10

# module -> {(input shape, linear_only, weight versions): result}; weak keys so modules can be collected.
_VERIFIED: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], _Verification]] = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------------ rule objects
class SpectralRule:
    """What freqlens knows about one layer type. The base class is the "no rule" gap (plumbing).

    Class attributes: ``kind`` (a short label), ``has_weights`` (the layer has a linear operator with
    per-frequency singular values: selected by default by ``weight_spectra`` / ``activation_spectra``),
    ``reported`` (hooked by default by ``decoder_report``), ``forms`` (the forwards a subclass's output is
    compared with: ``"stock"`` is the registered type's own ``forward``), ``spatial_dims`` (the numbers of
    spatial axes of the inputs the rule describes: 2 for ``(B, C, H, W)`` maps, 1 for ``(B, C, L)`` signals;
    walkers mark a layer called on other inputs as a gap).
    """

    kind = "none"
    has_weights = False
    reported = False
    forms: tuple[str, ...] = ("stock",)
    spatial_dims: tuple[int, ...] = (2,)

    def gap_reason(self, module: nn.Module) -> str:
        """Why this layer type has no exact rule (plumbing)."""
        return f"no spectral rule for {type(module).__name__}"

    def assess(self, module: nn.Module, name: str, assume_circular: bool = False) -> LayerRule:
        """The verdict from the module's attributes alone (no data, no weights read)."""
        return LayerRule("none", False, False, f"{self.gap_reason(module)}; prediction stops, measured spectrum used")

    def propagate(
        self, module: nn.Module, spectrum: torch.Tensor, name: str, assume_circular: bool = False
    ) -> torch.Tensor:
        """Output spectrum map ``(B, D, H', W')`` from the input spectrum map (decoder_spectra §2)."""
        raise NoExactRuleError(f"layer {name!r}: {self.assess(module, name, assume_circular).statement}")

    def check_spectrum_geometry(self, module: nn.Module, name: str, input_size: tuple[int, int]) -> None:
        """Raise ``ValueError`` naming the layer if it has no per-frequency spectrum on this input size."""
        raise ValueError(f"layer {name!r}: {self.gap_reason(module)}; it has no per-frequency spectrum")

    def layer_spectrum(
        self,
        module: nn.Module,
        input_size: tuple[int, int],
        name: str,
        output_size: Sequence[int] | None,
        dtype: torch.dtype,
    ) -> LayerSpectrum:
        """Per-frequency singular values of the layer's operator (conv_bottleneck §1.3, §5a)."""
        self.check_spectrum_geometry(module, name, input_size)
        raise AssertionError("unreachable")  # pragma: no cover

    def operator_blocks(
        self, module: nn.Module, input_size: tuple[int, int], name: str, dtype: torch.dtype
    ) -> torch.Tensor:
        """Per-frequency blocks ``(F_h, F_w, rows, cols)`` of the operator in unitary bases."""
        self.check_spectrum_geometry(module, name, input_size)
        raise AssertionError("unreachable")  # pragma: no cover

    def upsampling(self, module: nn.Module, name: str, in_hw: tuple[int, int]) -> tuple[int, int] | None:
        """Integer upsampling factor if the layer upsamples by tiling (Thm 4.4), else ``None``."""
        return None

    def replica_rule(self, module: nn.Module) -> str:
        """What happens to the DC replicas of an upsampling layer: ``repeated``, ``cancelled`` or ``unknown``."""
        return "unknown"

    def reference_forward(self, module: nn.Module, stock: type[nn.Module], x: torch.Tensor, form: str) -> torch.Tensor:
        """The forward the rule's numbers describe, for verifying subclasses: ``stock`` runs the registered
        type's own ``forward`` on the module's attributes."""
        return stock.forward(module, x)


class GapRule(SpectralRule):
    """A declared gap: a layer type with no exact per-frequency rule, and why."""

    def __init__(self, reason: str, kind: str = "none") -> None:
        self.reason = reason
        self.kind = kind

    def gap_reason(self, module: nn.Module) -> str:
        """Why this layer type has no exact rule (plumbing)."""
        return self.reason.format(type=type(module).__name__)


class IdentityRule(SpectralRule):
    """``nn.Identity`` and dropout in eval mode: the spectrum passes unchanged (exact)."""

    kind = "identity"
    spatial_dims = (1, 2, 3)

    def assess(self, module: nn.Module, name: str, assume_circular: bool = False) -> LayerRule:
        """The verdict from the module's attributes (rule and spec section: see the class docstring)."""
        if module.training and not isinstance(module, nn.Identity):
            return LayerRule(
                "none", False, False, f"{type(module).__name__} in training mode is random; prediction stops"
            )
        return LayerRule("identity", True, True, "identity", operator="identity: exact")

    def propagate(
        self, module: nn.Module, spectrum: torch.Tensor, name: str, assume_circular: bool = False
    ) -> torch.Tensor:
        """Output spectrum map by this rule (equation and spec section: see the class docstring)."""
        if not self.assess(module, name).predicts:
            return super().propagate(module, spectrum, name)
        return check_spectrum("spectrum", spectrum)


class Conv2dRule(SpectralRule):
    """``nn.Conv2d``: circular padding exact (Thm 3.2, C5a), zero padding by the padded-grid rule (§2.3),
    stride by aliasing (C5b); reflect / replicate padding are declared gaps. Besides the stock forward a
    subclass may be verified as the **circular** end-wrap operator whose spectrum ``weight_spectra`` reports."""

    kind = "conv2d"
    has_weights = True
    reported = True
    forms = ("stock", "circular")

    def assess(self, module: nn.Module, name: str, assume_circular: bool = False) -> LayerRule:
        """The verdict from the module's attributes (rule and spec section: see the class docstring)."""
        geom = conv_geometry(module, name)
        gap = padding_rule_gap(geom)
        stride = f", aliased by stride {geom.stride}" if geom.stride != (1, 1) else ""
        if gap is not None or (not geom.circular and assume_circular):
            if assume_circular:
                mode = geom.padding_mode if gap is not None else "zero"
                return LayerRule(
                    "conv2d-assumed-circular",
                    False,
                    True,
                    f"circular rule applied to a {mode}-padded conv (Assumption 3.1): an approximation",
                    operator=f"{mode} padding: circular approximation",
                )
            return LayerRule("none", False, False, f"{gap}; prediction stops, measured spectrum used")
        if geom.circular:
            return LayerRule(
                "conv2d-circular",
                True,
                True,
                "circular conv: h = T g + δ MN b (Thm 3.2, §2.2)" + stride,
                operator="circular: exact",
            )
        return LayerRule(
            "conv2d-zero-padded",
            True,
            True,
            "zero-padded conv: exact padded-grid rule (§2.3)" + (f", stride {geom.stride}" if stride else ""),
            operator="zero padding: padded-grid rule, exact",
        )

    def propagate(
        self, module: nn.Module, spectrum: torch.Tensor, name: str, assume_circular: bool = False
    ) -> torch.Tensor:
        """Output spectrum map by this rule (equation and spec section: see the class docstring)."""
        verdict = self.assess(module, name, assume_circular)
        if not verdict.predicts:
            raise NoExactRuleError(f"layer {name!r}: {verdict.statement}")
        return conv2d_spectrum(module, spectrum, name, assume_circular)

    def check_spectrum_geometry(self, module: nn.Module, name: str, input_size: tuple[int, int]) -> None:
        """Refuse, before any FFT, a geometry without a per-frequency spectrum (plumbing)."""
        problem = spectrum_grid_problem(conv_geometry(module, name), input_size)
        if problem is not None:
            raise ValueError(problem)

    def layer_spectrum(
        self,
        module: nn.Module,
        input_size: tuple[int, int],
        name: str,
        output_size: Sequence[int] | None,
        dtype: torch.dtype,
    ) -> LayerSpectrum:
        """Per-frequency singular values of the operator (conv_bottleneck §1.3-1.5, §5a)."""
        return layer_spectrum(module, input_size, name, output_size, dtype)  # validates the geometry first

    def operator_blocks(
        self, module: nn.Module, input_size: tuple[int, int], name: str, dtype: torch.dtype
    ) -> torch.Tensor:
        """Per-frequency blocks of the operator in unitary bases (conv_bottleneck §1.5)."""
        return layer_operator_blocks(module, input_size, name, dtype)

    def reference_forward(self, module: nn.Module, stock: type[nn.Module], x: torch.Tensor, form: str) -> torch.Tensor:
        """The forward the rule's numbers describe, used to verify subclasses (plumbing)."""
        if form == "stock":
            return stock.forward(module, x)
        # The circular operator on the input grid, T(ω) = conj(fft2 W) e^{-2πi⟨ω,p⟩/n} then the stride
        # (C5a/b): in pixels, y(i) = Σ_q W(q) x((s i + q - p) mod n), i.e. wrap p before and k-1-p after.
        geom = conv_geometry(module)
        if not geom.circular:  # the spectra would be labelled by the zero-padded grid: no such claim
            raise ValueError(f"attributes say {geom.padding_mode} padding {geom.padding}, not circular")
        (kh, kw), (ph, pw) = geom.kernel_size, geom.padding
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if not (ph < kh <= h and pw < kw <= w):
            raise ValueError(f"kernel {geom.kernel_size} / padding {geom.padding} do not fit the grid {h}x{w}")
        wrapped = F.pad(x, (pw, kw - 1 - pw, ph, kh - 1 - ph), mode="circular")
        weight, bias = module.weight, module.bias
        assert isinstance(weight, torch.Tensor)
        return F.conv2d(
            wrapped,
            weight,
            bias if isinstance(bias, torch.Tensor) else None,
            geom.stride,
            0,
            geom.dilation,
            geom.groups,
        )


class ConvTranspose2dRule(SpectralRule):
    """``nn.ConvTranspose2d`` with ``K − 2P = s`` and no output padding: zero insertion then a true
    convolution (decoder_spectra §2.6, Thm 4.4); other geometries are declared gaps."""

    kind = "conv-transpose2d"
    has_weights = True
    reported = True

    def assess(self, module: nn.Module, name: str, assume_circular: bool = False) -> LayerRule:
        """The verdict from the module's attributes (rule and spec section: see the class docstring)."""
        gap = transposed_rule_gap(conv_geometry(module, name))
        if gap is not None:
            return LayerRule("none", False, False, f"{gap}; prediction stops")
        return LayerRule(
            "conv-transpose2d",
            True,
            True,
            "transposed conv: zero insertion (tiling, Thm 4.4) then true conv, exact cropped rule (§2.6)",
            operator="transposed conv: exact cropped rule",
        )

    def propagate(
        self, module: nn.Module, spectrum: torch.Tensor, name: str, assume_circular: bool = False
    ) -> torch.Tensor:
        """Output spectrum map by this rule (equation and spec section: see the class docstring)."""
        return conv_transpose2d_spectrum(module, spectrum, name)

    check_spectrum_geometry = Conv2dRule.check_spectrum_geometry
    layer_spectrum = Conv2dRule.layer_spectrum
    operator_blocks = Conv2dRule.operator_blocks

    def replica_rule(self, module: nn.Module) -> str:
        """What happens to the DC replicas (decoder_spectra Thm 4.4, §2.6)."""
        return "repeated"  # Thm 4.4: a transposed conv is zero insertion then a conv


class _LineRule(SpectralRule):
    """A 1-D layer as its 2-D twin on the ``1×L`` grid (:func:`freqlens.spectral.conv.conv1d_as_conv2d`; the
    1-D convention of :func:`freqlens.fourier.spatial_grid`): every method hands the twin to ``_planar``, the
    rule of the twin's type, so no 1-D copy of the 2-D math exists. Sizes are a length ``L`` (int), ``(L,)``
    or ``(1, L)``; spectra and frequencies are on the ``1×L`` grid, labelled ``(0, k)``; spectrum maps are
    ``(B, C, L)`` or ``(B, C, 1, L)`` (plumbing)."""

    has_weights = True
    reported = False  # decoder_report walks (B, C, H, W) decoders only
    spatial_dims = (1,)
    _planar: SpectralRule
    spectrum_kind = "conv1d"

    @staticmethod
    def _label(module: nn.Module, name: str) -> str:
        return name or type(module).__name__

    @staticmethod
    def line_size(module: nn.Module, name: str, size: int | Sequence[int]) -> tuple[int, int]:
        """A 1-D size (length ``L`` as an int, ``(L,)`` or ``(1, L)``) as the ``1×L`` grid (plumbing)."""
        layer = f"layer {_LineRule._label(module, name)!r} is 1-D ({type(module).__name__})"
        try:
            grid = spatial_grid("input_size", size)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{layer}: {exc}") from None
        if grid[0] != 1:
            raise ValueError(f"{layer}: input_size must be a length L (int), (L,) or (1, L), got {size!r}")
        return grid

    def assess(self, module: nn.Module, name: str, assume_circular: bool = False) -> LayerRule:
        """The verdict of the 2-D twin (rule and spec section: the twin's rule)."""
        label = self._label(module, name)
        verdict = self._planar.assess(conv1d_as_conv2d(module, label), label, assume_circular)
        return dataclasses.replace(verdict, kind=verdict.kind.replace("2d", "1d"))

    def propagate(
        self, module: nn.Module, spectrum: torch.Tensor, name: str, assume_circular: bool = False
    ) -> torch.Tensor:
        """Output spectrum map by the twin's rule (equation and spec section: the twin's rule)."""
        label = self._label(module, name)
        line = isinstance(spectrum, torch.Tensor) and spectrum.ndim == 3
        g = spectrum.unsqueeze(-2) if line else spectrum
        if isinstance(g, torch.Tensor) and g.ndim == 4 and g.shape[-2] != 1:
            raise ValueError(
                f"layer {label!r} is a 1-D conv: spectrum must be (B, C, L) or (B, C, 1, L), got {tuple(g.shape)}"
            )
        out = self._planar.propagate(conv1d_as_conv2d(module, label), g, label, assume_circular)
        return out.squeeze(-2) if line else out

    def check_spectrum_geometry(self, module: nn.Module, name: str, input_size: tuple[int, int]) -> None:
        """Refuse, before any FFT, a geometry without a per-frequency spectrum (plumbing)."""
        label = self._label(module, name)
        grid = self.line_size(module, label, input_size)
        self._planar.check_spectrum_geometry(conv1d_as_conv2d(module, label), label, grid)

    def layer_spectrum(
        self,
        module: nn.Module,
        input_size: tuple[int, int],
        name: str,
        output_size: Sequence[int] | None,
        dtype: torch.dtype,
    ) -> LayerSpectrum:
        """Per-frequency singular values on the ``1×L`` grid (conv_bottleneck §1.3-1.5, §5a)."""
        label = self._label(module, name)
        grid = self.line_size(module, label, input_size)
        out = None if output_size is None else spatial_grid("output_size", output_size)
        spec = self._planar.layer_spectrum(conv1d_as_conv2d(module, label), grid, label, out, dtype)
        note = f"{spec.note} (nn.{type(module).__name__} on the 1xL grid)"
        return dataclasses.replace(spec, kind=self.spectrum_kind, note=note)

    def operator_blocks(
        self, module: nn.Module, input_size: tuple[int, int], name: str, dtype: torch.dtype
    ) -> torch.Tensor:
        """Per-frequency blocks ``(1, F, rows, cols)`` of the operator in unitary bases (conv_bottleneck §1.5)."""
        label = self._label(module, name)
        grid = self.line_size(module, label, input_size)
        return self._planar.operator_blocks(conv1d_as_conv2d(module, label), grid, label, dtype)


class Conv1dRule(_LineRule):
    """``nn.Conv1d``: exactly the :class:`Conv2dRule` of its ``nn.Conv2d`` twin on the ``1×L`` grid
    (:class:`_LineRule`): circular padding exact (Thm 3.2, C5a), zero padding by the padded-grid rule (§2.3),
    stride by aliasing (C5b), reflect / replicate padding declared gaps with the same reasons. A subclass may
    be verified as the stock forward or as the twin's circular end-wrap operator."""

    kind = "conv1d"
    forms = ("stock", "circular")
    _planar = Conv2dRule()

    def reference_forward(self, module: nn.Module, stock: type[nn.Module], x: torch.Tensor, form: str) -> torch.Tensor:
        """The forward the rule's numbers describe, used to verify subclasses (plumbing): the stock
        ``nn.Conv1d`` forward, or the twin's circular end-wrap operator on ``x[..., None, :]``."""
        if form == "stock":
            return stock.forward(module, x)
        twin = conv1d_as_conv2d(module)
        return self._planar.reference_forward(twin, nn.Conv2d, x.unsqueeze(-2), form).squeeze(-2)


class ConvTranspose1dRule(_LineRule):
    """``nn.ConvTranspose1d``: exactly the :class:`ConvTranspose2dRule` of its ``nn.ConvTranspose2d`` twin on
    the ``1×L`` grid (:class:`_LineRule`): with ``K − 2P = s`` and no output padding, zero insertion then a
    true convolution (decoder_spectra §2.6, Thm 4.4); other geometries are declared gaps."""

    kind = "conv-transpose1d"
    spectrum_kind = "conv_transpose1d"
    _planar = ConvTranspose2dRule()


class UpsampleRule(SpectralRule):
    """``nn.Upsample`` (nearest: tiling × ``D_r(u) D_r(v)``, §2.6; bilinear / bicubic: declared gap, §7.9)
    and :class:`ZeroInsertionUpsample` (``r×r`` tiling, Thm 4.4)."""

    kind = "upsample"
    reported = True

    def assess(self, module: nn.Module, name: str, assume_circular: bool = False) -> LayerRule:
        """The verdict from the module's attributes (rule and spec section: see the class docstring)."""
        if isinstance(module, ZeroInsertionUpsample):
            return LayerRule(
                "zero-insertion", True, True, "zero-insertion upsampling: r×r tiling (Thm 4.4, Eq. 11)", "tiling: exact"
            )
        assert isinstance(module, nn.Upsample)
        if module.mode in ("nearest", "nearest-exact"):
            return LayerRule(
                "nearest-upsample",
                True,
                True,
                "nearest upsampling: tiling × D_r(u) D_r(v), DC replicas cancel (§2.6)",
                "nearest upsampling: exact",
            )
        return LayerRule(
            "none",
            False,
            False,
            f"{module.mode} upsampling has no exact per-frequency rule (§7.9); "
            "prediction stops, measured spectrum used",
        )

    def propagate(
        self, module: nn.Module, spectrum: torch.Tensor, name: str, assume_circular: bool = False
    ) -> torch.Tensor:
        """Output spectrum map by this rule (equation and spec section: see the class docstring)."""
        return upsample_spectrum(module, spectrum, name)

    def upsampling(self, module: nn.Module, name: str, in_hw: tuple[int, int]) -> tuple[int, int] | None:
        """The integer tiling factor (decoder_spectra Thm 4.4)."""
        return upsample_factor(module, in_hw, name)

    def replica_rule(self, module: nn.Module) -> str:
        """What happens to the DC replicas (decoder_spectra Thm 4.4, §2.6)."""
        if isinstance(module, ZeroInsertionUpsample):
            return "repeated"  # Thm 4.4
        assert isinstance(module, nn.Upsample)
        return "cancelled" if module.mode in ("nearest", "nearest-exact") else "unknown"  # §2.6: D_r vanishes


class BatchNorm2dRule(SpectralRule):
    """``nn.BatchNorm2d`` in eval mode: a per-channel affine map (exact); in training mode a declared gap."""

    kind = "batchnorm"

    def assess(self, module: nn.Module, name: str, assume_circular: bool = False) -> LayerRule:
        """The verdict from the module's attributes (rule and spec section: see the class docstring)."""
        if module.training:
            return LayerRule(
                "none",
                False,
                False,
                "batch norm in training mode uses batch statistics; prediction stops, measured spectrum used",
            )
        return LayerRule("batchnorm-eval", True, True, "batch norm (eval): per-channel affine, exact", "affine: exact")

    def propagate(
        self, module: nn.Module, spectrum: torch.Tensor, name: str, assume_circular: bool = False
    ) -> torch.Tensor:
        """Output spectrum map by this rule (equation and spec section: see the class docstring)."""
        return batchnorm_spectrum(module, spectrum, name)


class TransferRule(SpectralRule):
    """Base for a user layer that maps a ``(B, C, H, W)`` input to a same-size output by one matrix per
    frequency plus an optional per-channel bias: ``ĥ(ω) = T(ω) ĝ(ω) + δ_ω HW b`` (decoder_spectra Thm 3.2).

    Subclass it, implement :meth:`transfer_matrices` (and :meth:`bias` if there is one) and pass an instance
    to :func:`register_rule`: spectra, blocks and propagation follow (exact). ``forward`` is the contract:
    it must compute exactly this operator (subclasses of the registered type are verified against it).
    """

    kind = "transfer"
    has_weights = True
    reported = True

    def transfer_matrices(self, module: nn.Module, input_size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        """``T (H, W, c_out, c_in)`` complex on the input grid (unnormalised spectra, PyTorch layout)."""
        raise NotImplementedError

    def bias(self, module: nn.Module) -> torch.Tensor | None:
        """Per-channel bias ``b (c_out,)`` added to every pixel, or ``None``."""
        return None

    def assess(self, module: nn.Module, name: str, assume_circular: bool = False) -> LayerRule:
        """The verdict from the module's attributes (rule and spec section: see the class docstring)."""
        return LayerRule(self.kind, True, True, f"{type(module).__name__}: per-frequency matrix (registered rule)")

    def propagate(
        self, module: nn.Module, spectrum: torch.Tensor, name: str, assume_circular: bool = False
    ) -> torch.Tensor:
        """Output spectrum map by this rule (equation and spec section: see the class docstring)."""
        g = check_spectrum("spectrum", spectrum)
        t = self.transfer_matrices(module, (int(g.shape[-2]), int(g.shape[-1])), torch.float64)
        return add_dc_bias(apply_transfer(t, g), self.bias(module))

    def check_spectrum_geometry(self, module: nn.Module, name: str, input_size: tuple[int, int]) -> None:
        """Refuse, before any FFT, a geometry without a per-frequency spectrum (plumbing)."""
        return None

    def operator_blocks(
        self, module: nn.Module, input_size: tuple[int, int], name: str, dtype: torch.dtype
    ) -> torch.Tensor:
        """Per-frequency blocks of the operator in unitary bases (conv_bottleneck §1.5)."""
        return self.transfer_matrices(module, input_size, dtype)

    def layer_spectrum(
        self,
        module: nn.Module,
        input_size: tuple[int, int],
        name: str,
        output_size: Sequence[int] | None,
        dtype: torch.dtype,
    ) -> LayerSpectrum:
        """Per-frequency singular values of the operator (conv_bottleneck §1.3-1.5, §5a)."""
        t = self.transfer_matrices(module, input_size, dtype)
        sv = singular_values_by_frequency(t.detach())
        out = tuple(int(s) for s in output_size) if output_size is not None else input_size
        return LayerSpectrum(
            name=name,
            kind=self.kind,
            input_size=input_size,
            output_size=(out[0], out[1]),
            grid=input_size,
            stride=(1, 1),
            in_channels=int(t.shape[-1]),
            out_channels=int(t.shape[-2]),
            singular_values=sv.cpu().numpy().astype(np.float64, copy=True),
            exact=out == input_size,
            note=f"registered rule {type(self).__name__}: per-frequency matrix on the input grid",
            operator=f"{self.kind}: exact" if out == input_size else f"{self.kind}: output size differs, approximation",
        )

    def reference_forward(self, module: nn.Module, stock: type[nn.Module], x: torch.Tensor, form: str) -> torch.Tensor:
        """The forward the rule's numbers describe, used to verify subclasses (plumbing)."""
        xh = torch.fft.fft2(x.to(torch.float64))
        return torch.fft.ifft2(self.propagate(module, xh, "probe")).real


# ------------------------------------------------------------------------------------ the registry
_NONLINEAR: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
)
_REGISTRY: dict[type[nn.Module], SpectralRule] = {}
_DEFAULT_RULE = SpectralRule()


def register_rule(module_type: type[nn.Module], rule: SpectralRule) -> None:
    """Register ``rule`` for ``module_type`` and its subclasses (a later registration replaces an earlier one).

    Public extension point (plumbing): e.g. ``register_rule(MyCircularConv, MyRule())`` with ``MyRule`` a
    :class:`TransferRule`. Subclasses of ``module_type`` that override ``forward`` are verified against
    ``rule.reference_forward`` before any exact claim.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be a subclass of torch.nn.Module, got {module_type!r}")
    if not isinstance(rule, SpectralRule):
        raise TypeError(f"rule must be a freqlens.spectral.SpectralRule instance, got {type(rule).__name__}")
    _REGISTRY[module_type] = rule
    _VERIFIED.clear()


def unregister_rule(module_type: type[nn.Module]) -> SpectralRule | None:
    """Remove the rule registered for exactly ``module_type`` and return it (``None`` if there was none;
    plumbing)."""
    _VERIFIED.clear()
    return _REGISTRY.pop(module_type, None)


def registered_rules() -> dict[type[nn.Module], SpectralRule]:
    """A copy of the registry: ``{module type: rule}`` (plumbing)."""
    return dict(_REGISTRY)


def rule_for(module: nn.Module) -> tuple[type[nn.Module], SpectralRule]:
    """The nearest registered base type of ``type(module)`` (by MRO) and its rule; unregistered modules get
    the "no rule" gap with their own type."""
    for base in type(module).__mro__:
        rule = _REGISTRY.get(base)
        if rule is not None:
            return base, rule
    return type(module), _DEFAULT_RULE


def _conv3d_gap(kind: str) -> GapRule:
    """The declared gap of the 3-D convs: what is missing. (A circular Conv3d is block-diagonal over 3-D
    frequencies, but every per-frequency route here, grids, aliasing blocks, tables, activation Grams, is 2-D;
    a 3-D conv is not a 2-D conv on one grid the way a 1-D conv is, so no delegation gives it.)"""
    return GapRule(
        f"{kind} has no per-frequency rule in freqlens: 3-D frequency grids (D×H×W blocks, tables, "
        "activation spectra) are not implemented (freqlens analyze reports its true operator norm)"
    )


_t: type[nn.Module]
for _t, _r in (
    (nn.Conv2d, Conv2dRule()),
    (nn.ConvTranspose2d, ConvTranspose2dRule()),
    (nn.Upsample, UpsampleRule()),
    (ZeroInsertionUpsample, UpsampleRule()),
    (nn.BatchNorm2d, BatchNorm2dRule()),
    (nn.Identity, IdentityRule()),
    (nn.Conv1d, Conv1dRule()),
    (nn.Conv3d, _conv3d_gap("Conv3d")),
    (nn.ConvTranspose1d, ConvTranspose1dRule()),
    (nn.ConvTranspose3d, _conv3d_gap("ConvTranspose3d")),
):
    register_rule(_t, _r)
for _t in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout):
    register_rule(_t, IdentityRule())
for _t in _NONLINEAR:
    register_rule(_t, GapRule("{type} is a pointwise nonlinearity: it mixes all frequencies, no exact rule"))


# ------------------------------------------------------------------------------------ verification
@dataclass(frozen=True)
class _Verification:
    form: str | None  # which of the rule's forms the forward matched, None for a gap
    reason: str


def needs_verification(module: nn.Module, stock: type[nn.Module]) -> bool:
    """A module is checked when its class overrides the registered type's ``forward`` or it carries a
    ``torch.nn.utils.parametrize`` parametrization (plumbing)."""
    return type(module).forward is not stock.forward or parametrize.is_parametrized(module)


def _weight_versions(module: nn.Module) -> tuple[tuple[int, int], ...]:
    return tuple((id(t), t._version) for t in [*module.parameters(), *module.buffers()])


def _relative_gap(actual: torch.Tensor, reference: torch.Tensor) -> float:
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    err = float((actual - reference).abs().max()) if reference.numel() else 0.0
    return err / scale if scale > 0 else err


def _verify(
    module: nn.Module, stock: type[nn.Module], rule: SpectralRule, input_shape: tuple[int, ...], linear_only: bool
) -> _Verification:
    label = type(module).__name__
    try:
        probe_module = copy.deepcopy(module).to(torch.float64).eval()
    except Exception as exc:
        return _Verification(None, f"{label} could not be copied to verify its forward ({exc})")
    gen = torch.Generator().manual_seed(0)
    device = next((t.device for t in probe_module.parameters()), torch.device("cpu"))
    x = torch.randn(1, *input_shape, generator=gen, dtype=torch.float64).to(device)
    if linear_only:  # one call on [x, 0]: f(x) - f(0) is the linear part, what weight spectra describe
        x = torch.cat([x, torch.zeros_like(x)])

    def part(y: torch.Tensor) -> torch.Tensor:
        return y[:1] - y[1:] if linear_only else y

    with torch.no_grad():
        try:
            actual = part(probe_module.forward(x))
        except Exception as exc:
            return _Verification(None, f"the forward of {label} failed on a float64 probe ({exc})")
        details = []
        for form in rule.forms:
            try:
                ref = part(rule.reference_forward(probe_module, stock, x, form))
            except Exception as exc:
                details.append(f"{form}: {exc}")
                continue
            if ref.shape != actual.shape:
                details.append(f"{form}: output {tuple(ref.shape[1:])} vs {tuple(actual.shape[1:])}")
                continue
            gap = _relative_gap(actual, ref)
            if gap <= VERIFY_RTOL:
                return _Verification(form, "")
            details.append(f"{form}: relative difference {gap:.2e}")
    return _Verification(
        None,
        f"{label} overrides forward (or is parametrized) and its output differs from the "
        f"{stock.__name__} rule on a float64 probe ({'; '.join(details)}); no exact claim",
    )


def verify_forward(module: nn.Module, input_shape: Sequence[int], linear_only: bool = False) -> tuple[str | None, str]:
    """Check once (cached per module, weight version and input shape) that ``module.forward`` computes the
    operator its rule describes, on a random float64 probe ``(1, *input_shape)``; ``linear_only`` compares
    ``f(x) − f(0)`` (what weight spectra describe). Returns ``(form, reason)``: the matched form (``"stock"``
    for modules that need no check) or ``None`` with the reason (plumbing)."""
    stock, rule = rule_for(module)
    if not needs_verification(module, stock):
        return "stock", ""
    shape = tuple(int(s) for s in input_shape)
    key = (shape, linear_only, _weight_versions(module))
    cache = _VERIFIED.setdefault(module, {})
    if key not in cache:
        cache[key] = _verify(module, stock, rule, shape, linear_only)
    result = cache[key]
    return result.form, result.reason


def layer_verdict(
    module: nn.Module,
    name: str = "",
    input_shape: Sequence[int] | None = None,
    assume_circular: bool = False,
) -> LayerRule:
    """The honest rule verdict for one module: its rule's :meth:`SpectralRule.assess`, turned into a marked
    gap when the module's forward could not be verified (no input shape given, or a mismatch) or when
    ``input_shape`` (``(C, *spatial)``) has a number of spatial axes the rule does not describe
    (:attr:`SpectralRule.spatial_dims`, e.g. ``nn.Upsample`` on a ``(C, L)`` signal)."""
    label = name or type(module).__name__
    stock, rule = rule_for(module)
    verdict = rule.assess(module, label, assume_circular)
    if verdict.predicts and input_shape is not None and len(input_shape) - 1 not in rule.spatial_dims:
        dims = len(input_shape) - 1
        return LayerRule(
            "none", False, False, f"{type(module).__name__} has no rule for inputs with {dims} spatial axes; "
            "prediction stops"
        )
    if not verdict.predicts or not needs_verification(module, stock):
        return verdict
    if input_shape is None:
        return LayerRule(
            "none", False, False, f"{type(module).__name__} overrides forward; give an input shape to verify it"
        )
    form, reason = verify_forward(module, input_shape)
    if form == "circular":
        reason = f"{type(module).__name__} computes the circular end-wrap operator, which has no propagation rule"
    if form != "stock":  # propagation follows the stock rule only
        return LayerRule(
            "none", False, False, (reason or f"{type(module).__name__} is not a stock layer") + "; prediction stops"
        )
    return verdict
