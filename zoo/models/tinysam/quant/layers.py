"""Fake-quantized layers of Q-TinySAM (weights and activations rounded to ``b``-bit integers, computed in float).

The arithmetic is the one of the official inference layers (``tinysam/quantization_layer``, after PTQ4ViT):
``q(x) = clamp(round(x / s), -2^(b-1), 2^(b-1) - 1) * s`` with round-half-to-even, applied

- to a linear layer's weight per block of rows x columns (``weight_scale`` of shape (n_V, 1, n_H, 1)) and to
  its input per chunk of features (``input_scale`` of shape (n_a, 1));
- after GELU, to the input with two scales: non-negative values on ``input_scale`` (codes 0 .. 2^(b-1) - 1),
  negative ones on ``input_neg_scale`` (codes -2^(b-1) .. 0), because GELU's output is lopsided;
- to a (transposed) convolution's weight with any ``weight_scale`` that broadcasts to it, and to its input
  asymmetrically: ``q(x - input_offset) + input_offset``; inputs of 32 or more bits are left in float.

Scales are buffers; the bit widths are attributes. Each class converts a float layer with ``from_float``.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['fake_quantize', 'QuantLinear', 'PostGeluQuantLinear', 'QuantConv2d', 'QuantConvTranspose2d',
           'QUANT_LAYERS', 'GELU_MIN']

#: the minimum of GELU (at x = -0.7518): the official negative range of post-GELU activations
GELU_MIN = 0.16997124254703522

Scales = Optional[Dict[str, torch.Tensor]]


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int,
                  offset: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``clamp(round((x - offset) / scale), qmin, qmax) * scale + offset`` (no offset: symmetric).

    After the first operation the steps run in place on the new tensor: activations are large, and the
    intermediate copies would cost more than the rounding itself."""
    q = x / scale if offset is None else (x - offset) / scale
    q = q.round_().clamp_(qmin, qmax).mul_(scale)
    return q if offset is None else q.add_(offset)


def signed_range(bits: int) -> Tuple[int, int]:
    """Integer codes of a signed ``bits``-bit quantizer: (-2^(bits-1), 2^(bits-1) - 1)."""
    return -2 ** (bits - 1), 2 ** (bits - 1) - 1


def _check_bits(bits: int, name: str) -> int:
    if not isinstance(bits, int) or bits < 2:
        raise ValueError(f'{name} must be an integer >= 2, got {bits!r}')
    return bits


class _QuantMixin:
    """Bit widths, scale buffers and their shape checks shared by the quantized layers."""
    #: scale buffers the layer can own, with their default (per-tensor) value
    scale_defaults: Dict[str, Optional[float]] = {}

    def _scale_names(self) -> Dict[str, Optional[float]]:
        return self.scale_defaults

    def _init_quant(self, weight_bits: int, input_bits: int, scales: Scales) -> None:
        self.weight_bits = _check_bits(weight_bits, 'weight_bits')
        self.input_bits = _check_bits(input_bits, 'input_bits')
        scales = dict(scales or {})
        unknown = set(scales) - set(self._scale_names())
        if unknown:
            raise ValueError(f'{type(self).__name__} has no scale {sorted(unknown)}; '
                             f'it has {sorted(self._scale_names())}')
        for name, default in self._scale_names().items():
            value = scales.get(name)
            value = self._default_scale(name, default) if value is None else value.detach().clone().float()
            self.register_buffer(name, value.to(self.weight.device))
        self._check_scales()

    def _default_scale(self, name: str, default: Optional[float]) -> torch.Tensor:
        return torch.full((), default)

    def _check_scales(self) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, weight_bits={self.weight_bits}, input_bits={self.input_bits}'


class QuantLinear(_QuantMixin, nn.Linear):
    """``nn.Linear`` on a fake-quantized input and weight (official ``InferQuantLinear``)."""
    kind = 'linear'
    float_type = nn.Linear
    scale_defaults = {'weight_scale': 1.0, 'input_scale': 1.0}

    def __init__(self, in_features: int, out_features: int, bias: bool = True, weight_bits: int = 8,
                 input_bits: int = 8, scales: Scales = None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_quant(weight_bits, input_bits, scales)

    def _default_scale(self, name: str, default: float) -> torch.Tensor:
        return torch.full((1, 1, 1, 1) if name == 'weight_scale' else (1, 1), default)

    def _check_scales(self) -> None:
        if self.weight_scale.ndim != 4 or self.weight_scale.shape[1] != 1 or self.weight_scale.shape[3] != 1:
            raise ValueError(f'weight_scale must have shape (n_V, 1, n_H, 1), got {tuple(self.weight_scale.shape)}')
        n_v, n_h = self.weight_scale.shape[0], self.weight_scale.shape[2]
        if self.out_features % n_v or self.in_features % n_h:
            raise ValueError(f'weight_scale blocks {n_v} x {n_h} do not divide the weight '
                             f'{self.out_features} x {self.in_features}')
        if self.input_scale.ndim != 2 or self.input_scale.shape[1] != 1 or self.in_features % self.input_scale.shape[0]:
            raise ValueError(f'input_scale must have shape (n_a, 1) with n_a dividing {self.in_features}, '
                             f'got {tuple(self.input_scale.shape)}')

    @classmethod
    def from_float(cls, linear: nn.Linear, weight_bits: int = 8, input_bits: int = 8,
                   scales: Scales = None) -> 'QuantLinear':
        """A quantized layer sharing ``linear``'s weight and bias."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, weight_bits, input_bits,
                    scales, device=linear.weight.device, dtype=linear.weight.dtype)
        layer.weight, layer.bias = linear.weight, linear.bias
        return layer

    def quantized_weight(self) -> torch.Tensor:
        n_v, _, n_h, _ = self.weight_scale.shape
        w = self.weight.view(n_v, self.out_features // n_v, n_h, self.in_features // n_h)
        return fake_quantize(w, self.weight_scale, *signed_range(self.weight_bits)).view_as(self.weight)

    def _input_chunks(self, x: torch.Tensor) -> torch.Tensor:
        n_a = self.input_scale.shape[0]
        return x.reshape(*x.shape[:-1], n_a, x.shape[-1] // n_a)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(self._input_chunks(x), self.input_scale, *signed_range(self.input_bits)).view_as(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantize_input(x), self.quantized_weight(), self.bias)


class PostGeluQuantLinear(QuantLinear):
    """``QuantLinear`` for a GELU output: separate scales for its positive and negative parts
    (official ``InferQuantLinearPost``)."""
    kind = 'linear_post_gelu'
    scale_defaults = {'weight_scale': 1.0, 'input_scale': 1.0, 'input_neg_scale': None}

    def _default_scale(self, name: str, default: Optional[float]) -> torch.Tensor:
        if name == 'input_neg_scale':
            return torch.tensor(GELU_MIN / 2 ** (self.input_bits - 1))
        return super()._default_scale(name, default)

    def _check_scales(self) -> None:
        super()._check_scales()
        if self.input_neg_scale.numel() != 1:
            raise ValueError(f'input_neg_scale must be one value, got shape {tuple(self.input_neg_scale.shape)}')

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        chunks = self._input_chunks(x)
        qmin, qmax = signed_range(self.input_bits)
        positive = fake_quantize(chunks, self.input_scale, 0, qmax)
        negative = fake_quantize(chunks, self.input_neg_scale, qmin, 0)
        return (positive + negative).view_as(x)


class _QuantConvMixin(_QuantMixin):
    scale_defaults = {'weight_scale': 1.0, 'input_scale': 1.0, 'input_offset': 0.0}

    def _scale_names(self) -> Dict[str, Optional[float]]:
        if self.input_bits >= 32:  # the input stays in float, as in the official layers
            return {'weight_scale': 1.0}
        return self.scale_defaults

    def _check_scales(self) -> None:
        w = tuple(self.weight.shape)
        try:
            fits = torch.broadcast_shapes(self.weight_scale.shape, w) == w
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f'weight_scale of shape {tuple(self.weight_scale.shape)} does not broadcast to the '
                             f'weight {w}')
        for name in set(self._scale_names()) - {'weight_scale'}:
            shape = tuple(getattr(self, name).shape)
            padded = (1,) * (4 - len(shape)) + shape
            if len(shape) > 4 or padded[0] != 1 or padded[1] not in (1, self.in_channels) or padded[2:] != (1, 1):
                raise ValueError(f'{name} of shape {shape} is neither per tensor nor per input channel '
                                 f'(1, {self.in_channels}, 1, 1)')

    def quantized_weight(self) -> torch.Tensor:
        return fake_quantize(self.weight, self.weight_scale, *signed_range(self.weight_bits))

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_bits >= 32:
            return x
        return fake_quantize(x, self.input_scale, *signed_range(self.input_bits), offset=self.input_offset)


class QuantConv2d(_QuantConvMixin, nn.Conv2d):
    """``nn.Conv2d`` on a fake-quantized input and weight (official ``InferQuantConv2d``)."""
    kind = 'conv2d'
    float_type = nn.Conv2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, weight_bits: int = 8, input_bits: int = 8,
                 scales: Scales = None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         device=device, dtype=dtype)
        self._init_quant(weight_bits, input_bits, scales)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, weight_bits: int = 8, input_bits: int = 8,
                   scales: Scales = None) -> 'QuantConv2d':
        """A quantized layer sharing ``conv``'s weight and bias."""
        if conv.padding_mode != 'zeros':
            raise ValueError(f'only zero-padded convolutions are quantized, got padding_mode={conv.padding_mode!r}')
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, weight_bits, input_bits, scales,
                    device=conv.weight.device, dtype=conv.weight.dtype)
        layer.weight, layer.bias = conv.weight, conv.bias
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.quantize_input(x), self.quantized_weight(), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class QuantConvTranspose2d(_QuantConvMixin, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` on a fake-quantized input and weight (official ``InferQuantConvTranspose2d``)."""
    kind = 'conv_transpose2d'
    float_type = nn.ConvTranspose2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, weight_bits: int = 8, input_bits: int = 8,
                 scales: Scales = None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, device=device, dtype=dtype)
        self._init_quant(weight_bits, input_bits, scales)

    @classmethod
    def from_float(cls, conv: nn.ConvTranspose2d, weight_bits: int = 8, input_bits: int = 8,
                   scales: Scales = None) -> 'QuantConvTranspose2d':
        """A quantized layer sharing ``conv``'s weight and bias."""
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.output_padding, conv.groups, conv.bias is not None, conv.dilation, weight_bits, input_bits,
                    scales, device=conv.weight.device, dtype=conv.weight.dtype)
        layer.weight, layer.bias = conv.weight, conv.bias
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(self.quantize_input(x), self.quantized_weight(), self.bias, self.stride,
                                  self.padding, self.output_padding, self.groups, self.dilation)


#: quantized layer classes by kind (the ``kind`` of a :class:`~zoo.models.tinysam.quant.quantize.QuantLayer`)
QUANT_LAYERS = {cls.kind: cls for cls in (QuantLinear, PostGeluQuantLinear, QuantConv2d, QuantConvTranspose2d)}
