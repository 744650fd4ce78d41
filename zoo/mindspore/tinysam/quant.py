"""Q-TinySAM (W8A8) in MindSpore: the fake-quantized layers of :mod:`zoo.models.tinysam.quant.layers` as cells,
and :func:`from_torch_qsam`, which builds the twin of a torch Q-TinySAM with its converted scales.

``q(x) = clamp(round(x / s), qmin, qmax) * s`` (round half to even, as torch) on a linear layer's weight per block
of rows x columns and on its input per chunk of features; a GELU output read by a linear layer is quantized with
two scales (non-negative and negative parts); a (transposed) convolution's weight with a broadcasting scale and
its input asymmetrically around ``input_offset``, or not at all for inputs of 32 bits and more. The scales are
non-trainable parameters named as torch's buffers, so the converter maps them by name.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .tiny_sam import TinySam, build_tinysam

__all__ = ['fake_quantize', 'QuantLinear', 'QuantConv2d', 'QuantConvTranspose2d', 'from_torch_qsam', 'cell_at']


def fake_quantize(x: Tensor, scale: Tensor, qmin: int, qmax: int, offset: Optional[Tensor] = None) -> Tensor:
    """``clamp(round((x - offset) / scale), qmin, qmax) * scale + offset`` (no offset: symmetric)."""
    q = x / scale if offset is None else (x - offset) / scale
    q = ops.clamp(ops.round(q), qmin, qmax) * scale
    return q if offset is None else q + offset


def _signed(bits: int) -> tuple[int, int]:
    return -2 ** (bits - 1), 2 ** (bits - 1) - 1


def _scale(shape: tuple, name: str) -> Parameter:
    return Parameter(Tensor(np.ones(shape, np.float32)), name=name, requires_grad=False)


class QuantLinear(nn.Cell):
    """A linear layer on a fake-quantized input (per feature chunk) and weight (per block); ``post_gelu`` adds
    the negative-part scale ``input_neg_scale`` of a GELU output."""

    def __init__(self, in_features: int, out_features: int, bias: bool, weight_bits: int, input_bits: int,
                 scale_shapes: Mapping[str, tuple], post_gelu: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(Tensor(np.zeros((out_features, in_features), np.float32)), name='weight')
        self.bias = Parameter(Tensor(np.zeros(out_features, np.float32)), name='bias') if bias else None
        self.weight_bits, self.input_bits, self.post_gelu = weight_bits, input_bits, post_gelu
        self.weight_scale = _scale(scale_shapes['weight_scale'], 'weight_scale')
        self.input_scale = _scale(scale_shapes['input_scale'], 'input_scale')
        if post_gelu:
            self.input_neg_scale = _scale(scale_shapes['input_neg_scale'], 'input_neg_scale')

    def quantized_weight(self) -> Tensor:
        n_v, _, n_h, _ = self.weight_scale.shape
        w = self.weight.reshape(n_v, self.out_features // n_v, n_h, self.in_features // n_h)
        return fake_quantize(w, self.weight_scale, *_signed(self.weight_bits)).reshape(self.weight.shape)

    def quantize_input(self, x: Tensor) -> Tensor:
        n_a = self.input_scale.shape[0]
        chunks = x.reshape(x.shape[:-1] + (n_a, x.shape[-1] // n_a))
        qmin, qmax = _signed(self.input_bits)
        if self.post_gelu:
            q = fake_quantize(chunks, self.input_scale, 0, qmax) + fake_quantize(chunks, self.input_neg_scale, qmin, 0)
        else:
            q = fake_quantize(chunks, self.input_scale, qmin, qmax)
        return q.reshape(x.shape)

    def construct(self, x: Tensor) -> Tensor:
        y = ops.matmul(self.quantize_input(x), self.quantized_weight().T)
        return y if self.bias is None else y + self.bias


class _QuantConv(nn.Cell):
    """Shared part of the quantized convolutions: the float cell's kernel primitive, weight and bias, plus scales."""

    def __init__(self, conv: nn.Cell, weight_bits: int, input_bits: int, scale_shapes: Mapping[str, tuple]):
        super().__init__()
        self.weight = Parameter(Tensor(conv.weight.asnumpy()), name='weight')
        self.bias = Parameter(Tensor(conv.bias.asnumpy()), name='bias') if conv.has_bias else None
        self.weight_bits, self.input_bits = weight_bits, input_bits
        self.weight_scale = _scale(scale_shapes['weight_scale'], 'weight_scale')
        self.quantize_inputs = input_bits < 32
        if self.quantize_inputs:
            self.input_scale = _scale(scale_shapes['input_scale'], 'input_scale')
            self.input_offset = _scale(scale_shapes['input_offset'], 'input_offset')

    def quantized_weight(self) -> Tensor:
        return fake_quantize(self.weight, self.weight_scale, *_signed(self.weight_bits))

    def quantize_input(self, x: Tensor) -> Tensor:
        if not self.quantize_inputs:
            return x
        return fake_quantize(x, self.input_scale, *_signed(self.input_bits), offset=self.input_offset)

    def _add_bias(self, y: Tensor) -> Tensor:
        return y if self.bias is None else y + self.bias.reshape(1, -1, 1, 1)


class QuantConv2d(_QuantConv):
    """``torch.nn.Conv2d`` (zero padding) on a fake-quantized input and weight."""

    def __init__(self, conv: nn.Conv2d, weight_bits: int, input_bits: int, scale_shapes: Mapping[str, tuple]):
        super().__init__(conv, weight_bits, input_bits, scale_shapes)
        self.conv2d = conv.conv2d

    def construct(self, x: Tensor) -> Tensor:
        return self._add_bias(self.conv2d(self.quantize_input(x), self.quantized_weight()))


class QuantConvTranspose2d(_QuantConv):
    """``torch.nn.ConvTranspose2d`` with kernel = stride and no padding (SAM's upscaling) on fake-quantized input
    and weight."""

    def __init__(self, conv: nn.Conv2dTranspose, weight_bits: int, input_bits: int, scale_shapes: Mapping[str, tuple]):
        super().__init__(conv, weight_bits, input_bits, scale_shapes)
        self.conv2d_transpose = conv.conv2d_transpose
        self.out_channels, self.stride = conv.out_channels, conv.stride

    def construct(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        shape = (n, self.out_channels, h * self.stride[0], w * self.stride[1])
        return self._add_bias(self.conv2d_transpose(self.quantize_input(x), self.quantized_weight(), shape))


def _quantized_cell(kind: str, cell: nn.Cell, module: Any, shapes: Mapping[str, tuple]) -> nn.Cell:
    bits = (module.weight_bits, module.input_bits)
    if kind in ('linear', 'linear_post_gelu'):
        return QuantLinear(module.in_features, module.out_features, module.bias is not None, *bits, shapes,
                           post_gelu=kind == 'linear_post_gelu')
    if kind == 'conv2d':
        return QuantConv2d(cell, *bits, shapes)
    if kind == 'conv_transpose2d':
        if tuple(module.kernel_size) != tuple(module.stride) or any(module.padding) or any(module.output_padding):
            raise ValueError('only transposed convolutions with kernel size = stride and no padding are converted')
        return QuantConvTranspose2d(cell, *bits, shapes)
    raise ValueError(f'unknown quantized layer kind {kind!r}')


def _replace(root: nn.Cell, path: str, new: nn.Cell) -> None:
    parent_path, _, child = path.rpartition('.')
    parent = root
    for part in parent_path.split('.') if parent_path else []:
        parent = parent[int(part)] if part.isdigit() else getattr(parent, part)
    if child.isdigit():
        parent[int(child)] = new
    else:
        setattr(parent, child, new)


def cell_at(root: nn.Cell, path: str) -> nn.Cell:
    """The sub-cell of ``root`` at a dotted torch module path (``'mask_decoder.output_upscaling.0'``)."""
    for part in path.split('.'):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def from_torch_qsam(sam: Any) -> TinySam:
    """The MindSpore twin of a torch Q-TinySAM (``zoo.create_sam('tinysam_w8a8')``), quantized layers and scales
    included."""
    from ..api import load_torch_weights
    state_dict = sam.state_dict()
    encoder = sam.image_encoder
    twin = build_tinysam(encoder.img_size, encoder.out_chans, encoder.num_classes)
    quantized = {name: m for name, m in sam.named_modules() if hasattr(m, 'kind') and hasattr(m, 'weight_bits')}
    if not quantized:
        raise ValueError('this TinySAM has no quantized layers: convert it with zoo.mindspore.tinysam.from_torch_sam')
    for name, module in quantized.items():
        shapes = {key[len(name) + 1:]: tuple(v.shape) for key, v in state_dict.items()
                  if key.startswith(name + '.') and key.rpartition('.')[2] in type(module).scale_defaults}
        _replace(twin, name, _quantized_cell(module.kind, cell_at(twin, name), module, shapes))
    load_torch_weights(twin, state_dict)
    twin.set_train(False)
    return twin
