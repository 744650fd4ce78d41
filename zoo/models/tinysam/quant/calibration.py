"""Post-training quantization of TinySAM: per-layer scale search on calibration images (Q-TinySAM's recipe).

The recipe's facts (TinySAM paper, Sec. "Quantization" and "Implementation Details"; PTQ4ViT, which its
quantized layers follow):

- every quantized layer has a weight scale and an input scale, initialised from the calibration data's
  range (``max |x| / (2^(b-1) - 0.5)``; asymmetric inputs: ``(max - min) / (2^b - 1)`` around the midpoint);
- each scale is chosen among ``n = 100`` candidates spread linearly over ``[0.01, 1.2]`` times its initial
  value, weight and input scales alternately, for ``3`` rounds;
- a candidate's cost is the Hessian-guided distance between the quantized and float layer outputs,
  ``sum((g * (y_q - y))^2)``, where ``g`` is the gradient of the task loss on the layer output. The task
  loss scores SAM's outputs: its masks and its IoU predictions;
- 8 calibration images (SA-1B in the paper).

Choices of zoo where the official release publishes no calibration code:

- the task loss is the cross-entropy of the mask logits and of the IoU predictions against the float model's
  own decisions (the masks thresholded at 0, the best mask). The paper's KL divergence between quantized and
  float outputs has a zero gradient where it is evaluated (all layers in float), so its Fisher form is used;
- the prompts are a ``points_per_side`` x ``points_per_side`` grid of single foreground points per image;
- the layers are calibrated independently, all others in float (PTQ4ViT's default "parallel" calibration),
  so one forward and backward pass per image collects everything;
- a layer's cost is measured on a random sample of its inputs: ``rows_per_image`` rows (tokens) per image for
  linear layers, a ``window`` x ``window`` window of outputs per image (with the inputs that produce it) for
  convolutions, which keeps the search affordable on a CPU;
- weight scales: one per output channel for convolutions (PTQ4ViT's channel-wise convolutions), one per
  q / k / v block for fused ``qkv`` projections and one per tensor for other linear layers; input scales:
  one per tensor.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.tiny_sam import TinySam
from ..utils.amg import build_point_grid
from ..utils.transforms import ResizeLongestSide, to_rgb_uint8
from .layers import GELU_MIN, QUANT_LAYERS
from .quantize import QuantLayer, default_quant_layers, quantize_modules

__all__ = ['SearchConfig', 'LayerSamples', 'collect_samples', 'search_scales', 'calibrate_sam']


@dataclass(frozen=True)
class SearchConfig:
    """The scale search: candidates over ``search_range`` x the initial scale, ``rounds`` of alternation."""
    candidates: int = 100
    search_range: Tuple[float, float] = (0.01, 1.2)
    rounds: int = 3
    rows_per_image: int = 512
    window: int = 16

    def multipliers(self) -> torch.Tensor:
        low, high = self.search_range
        if not 0 < low <= high or self.candidates < 1 or self.rounds < 1:
            raise ValueError(f'invalid search: range {self.search_range}, {self.candidates} candidates, '
                             f'{self.rounds} rounds')
        return torch.linspace(low, high, self.candidates)


@dataclass
class LayerSamples:
    """What a layer saw in float: input samples, the float outputs they give and the task-loss gradients there,
    and the range of its whole inputs (where the scales start from).

    For convolutions ``inputs`` are windows cut from the zero-padded input and ``mask`` marks the real pixels
    (padding stays exactly zero after quantization, as in the layer itself)."""
    inputs: torch.Tensor
    outputs: torch.Tensor
    grads: torch.Tensor
    input_min: torch.Tensor
    input_max: torch.Tensor
    mask: Optional[torch.Tensor] = None


def _sample_rows(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, n: int, gen: torch.Generator) -> LayerSamples:
    x, y, g = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1]), g.reshape(-1, g.shape[-1])
    idx = torch.randperm(x.shape[0], generator=gen)[:n]
    return LayerSamples(x[idx], y[idx], g[idx], x.min(), x.max())


def _random_window(height: int, width: int, size: int, gen: torch.Generator) -> Tuple[slice, slice]:
    h, w = min(size, height), min(size, width)
    top = int(torch.randint(height - h + 1, (1,), generator=gen))
    left = int(torch.randint(width - w + 1, (1,), generator=gen))
    return slice(top, top + h), slice(left, left + w)


def _padded_crop(x: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
    """A copy of ``x[..., rows, cols]`` where the window may reach past the borders: outside reads as zeros."""
    h, w = x.shape[-2:]
    crop = x[..., max(rows.start, 0):min(rows.stop, h), max(cols.start, 0):min(cols.stop, w)]
    pad = (max(-cols.start, 0), max(cols.stop - w, 0), max(-rows.start, 0), max(rows.stop - h, 0))
    return F.pad(crop, pad).clone()  # a copy: a view would keep the whole activation alive


def _sample_window(layer: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, size: int,
                   gen: torch.Generator) -> LayerSamples:
    """A random window of the output and the (zero-padded) input window that computes it."""
    (sh, sw), (kh, kw) = layer.stride, layer.kernel_size
    if isinstance(layer, nn.ConvTranspose2d):  # each input pixel paints its own stride x stride output block
        if (sh, sw) != (kh, kw) or layer.padding != (0, 0) or layer.output_padding != (0, 0) \
                or layer.dilation != (1, 1):
            raise ValueError('calibration handles transposed convolutions whose kernel equals their stride')
        rows, cols = _random_window(x.shape[-2], x.shape[-1], max(1, size // sh), gen)
        out = (..., slice(rows.start * sh, rows.stop * sh), slice(cols.start * sw, cols.stop * sw))
        return LayerSamples(x[..., rows, cols].clone(), y[out].clone(), g[out].clone(), x.min(), x.max())
    rows, cols = _random_window(y.shape[-2], y.shape[-1], size, gen)
    (ph, pw), (dh, dw) = layer.padding, layer.dilation
    in_rows = slice(rows.start * sh - ph, (rows.stop - 1) * sh - ph + dh * (kh - 1) + 1)
    in_cols = slice(cols.start * sw - pw, (cols.stop - 1) * sw - pw + dw * (kw - 1) + 1)
    return LayerSamples(_padded_crop(x, in_rows, in_cols), y[..., rows, cols].clone(), g[..., rows, cols].clone(),
                        x.min(), x.max(), _padded_crop(torch.ones_like(x[:1, :1]), in_rows, in_cols))


def _task_loss(masks: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the masks and of the IoU predictions against the model's own (detached) decisions."""
    mask_loss = F.binary_cross_entropy_with_logits(masks, (masks > 0).float().detach())
    return mask_loss + F.cross_entropy(iou, iou.argmax(dim=1).detach())


def collect_samples(model: TinySam, images: Sequence[np.ndarray], layers: Mapping[str, QuantLayer],
                    config: SearchConfig = SearchConfig(), points_per_side: int = 4,
                    seed: int = 0) -> Dict[str, LayerSamples]:
    """One float forward and backward pass per image; each listed layer keeps samples of what it saw."""
    gen = torch.Generator().manual_seed(seed)
    transform = ResizeLongestSide(model.img_size)
    collected: Dict[str, List[LayerSamples]] = {name: [] for name in layers}

    def hook(name: str) -> Callable:
        def forward_hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            x, y = inputs[0].detach(), output.detach()  # detached: the hook must not keep the graph alive

            def grad_hook(grad: torch.Tensor) -> None:
                g = grad.detach()
                if isinstance(module, nn.Linear):
                    collected[name].append(_sample_rows(x, y, g, config.rows_per_image, gen))
                else:
                    collected[name].append(_sample_window(module, x, y, g, config.window, gen))
            output.register_hook(grad_hook)
        return forward_hook

    # gradients flow from the pixels and the prompts, not into the weights: nothing cached by a layer
    # (such as timm's attention-bias cache) joins the graph, and no weight gradient is computed
    was_training, needs_grad = model.training, [p for p in model.parameters() if p.requires_grad]
    model.eval().requires_grad_(False)
    handles = [model.get_submodule(name).register_forward_hook(hook(name)) for name in layers]
    try:
        for image in images:
            _forward_backward(model, to_rgb_uint8(image), transform, points_per_side)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        for p in needs_grad:
            p.requires_grad_(True)
    missing = [name for name, samples in collected.items() if not samples]
    if missing:
        raise ValueError(f'layers {missing[:3]} never ran during calibration; they cannot be calibrated')
    return {name: _concat(samples) for name, samples in collected.items()}


def _forward_backward(model: TinySam, image: np.ndarray, transform: ResizeLongestSide, points_per_side: int) -> None:
    """The float model on one image and a grid of point prompts, then the task loss's backward pass.

    Its own function so that the graph (and the activations the hooks look at) is freed on return."""
    resized = torch.as_tensor(transform.apply_image(image), device=model.device).permute(2, 0, 1)
    points = build_point_grid(points_per_side) * np.array(image.shape[1::-1])
    coords = torch.as_tensor(transform.apply_coords(points, image.shape[:2]), dtype=torch.float,
                             device=model.device)[:, None]
    labels = torch.ones(len(coords), 1, dtype=torch.int, device=model.device)
    with torch.enable_grad():
        pixels = model.preprocess(resized[None].float()).requires_grad_()
        sparse, dense = model.prompt_encoder((coords, labels), None, None)
        masks, iou = model.mask_decoder.predict_masks(model.image_encoder(pixels), model.prompt_encoder.get_dense_pe(),
                                                      sparse.requires_grad_(), dense)
        _task_loss(masks, iou).backward()


def _concat(samples: List[LayerSamples]) -> LayerSamples:
    return LayerSamples(torch.cat([s.inputs for s in samples]), torch.cat([s.outputs for s in samples]),
                        torch.cat([s.grads for s in samples]), torch.stack([s.input_min for s in samples]).min(),
                        torch.stack([s.input_max for s in samples]).max(), samples[0].mask)


def _initial_scales(layer: nn.Module, name: str, spec: QuantLayer, samples: LayerSamples) -> Dict[str, torch.Tensor]:
    """Range-based scales: weights per output channel (conv), per q/k/v block (qkv) or per tensor (linear)."""
    w_half = 2 ** (spec.weight_bits - 1) - 0.5
    a_half = 2 ** (spec.input_bits - 1) - 0.5
    low, high = samples.input_min, samples.input_max
    w = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        blocks = 3 if name.endswith('.qkv') else 1
        scales = {'weight_scale': w.view(blocks, -1).abs().amax(1).view(blocks, 1, 1, 1) / w_half}
        if spec.kind == 'linear_post_gelu':
            scales['input_scale'] = (high / a_half).view(1, 1)
            scales['input_neg_scale'] = torch.tensor(GELU_MIN / 2 ** (spec.input_bits - 1))
        else:
            scales['input_scale'] = (torch.maximum(-low, high) / a_half).view(1, 1)
        return scales
    channel_dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    dims = [d for d in range(w.ndim) if d != channel_dim]
    scales = {'weight_scale': w.abs().amax(dims, keepdim=True) / w_half}
    if spec.input_bits < 32:
        scales['input_offset'] = (high + low) / 2
        scales['input_scale'] = (high - low) / (2 * a_half)
    return scales


def _outputs(layer: nn.Module, samples: LayerSamples, x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x_q, w_q, layer.bias)
    if isinstance(layer, nn.ConvTranspose2d):
        return F.conv_transpose2d(x_q, w_q, layer.bias, layer.stride, 0, 0, layer.groups, layer.dilation)
    return F.conv2d(x_q * samples.mask, w_q, layer.bias, layer.stride, 0, layer.dilation, layer.groups)


def _channel_errors(layer: nn.Module, err: torch.Tensor, groups: int) -> torch.Tensor:
    """Squared errors summed per output channel, then per group of consecutive channels (one weight scale each)."""
    per_channel = err.reshape(-1, err.shape[-1]).sum(0) if isinstance(layer, nn.Linear) else err.sum((0, 2, 3))
    return per_channel.view(groups, -1).sum(1)


def search_scales(layer: nn.Module, name: str, spec: QuantLayer, samples: LayerSamples,
                  config: SearchConfig = SearchConfig()) -> Dict[str, torch.Tensor]:
    """The scales of one layer: Hessian-guided grid search, weight and input scales alternately."""
    grads = samples.grads
    if not grads.abs().max() > 0:  # the task loss does not reach this layer's output: plain squared error
        grads = torch.ones_like(grads)
    weight = (grads ** 2).to(samples.outputs.dtype)
    init = _initial_scales(layer, name, spec, samples)
    quant = QUANT_LAYERS[spec.kind].from_float(layer, spec.weight_bits, spec.input_bits, init)
    multipliers = config.multipliers()
    groups = quant.weight_scale.numel()

    def cost(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
        return weight * (_outputs(layer, samples, x_q, w_q) - samples.outputs) ** 2

    with torch.no_grad():
        for _ in range(config.rounds):
            x_q = quant.quantize_input(samples.inputs)
            best = torch.full((groups,), float('inf'))
            chosen = quant.weight_scale.clone()
            for m in multipliers:
                quant.weight_scale = init['weight_scale'] * m
                errors = _channel_errors(layer, cost(x_q, quant.quantized_weight()), groups)
                better = errors < best
                best = torch.where(better, errors, best)
                chosen.view(-1)[better] = quant.weight_scale.view(-1)[better]
            quant.weight_scale = chosen
            if 'input_scale' not in init:
                continue
            w_q = quant.quantized_weight()
            errors = []
            for m in multipliers:
                quant.input_scale = init['input_scale'] * m
                errors.append(cost(quant.quantize_input(samples.inputs), w_q).sum())
            quant.input_scale = init['input_scale'] * multipliers[int(torch.stack(errors).argmin())]
    return {key: getattr(quant, key).clone() for key in init}


def calibrate_sam(model: TinySam, images: Sequence[np.ndarray], layers: Optional[Mapping[str, QuantLayer]] = None,
                  config: SearchConfig = SearchConfig(), points_per_side: int = 4, seed: int = 0,
                  log: Optional[Callable[[str], None]] = None) -> TinySam:
    """Q-TinySAM from a float TinySAM: a quantized copy whose scales are searched on ``images``."""
    layers = default_quant_layers(model) if layers is None else dict(layers)
    start = time.perf_counter()
    samples = collect_samples(model, images, layers, config, points_per_side, seed)
    if log:
        log(f'collected samples of {len(layers)} layers on {len(images)} images in {time.perf_counter() - start:.1f} s')
    scales = {}
    for i, (name, spec) in enumerate(layers.items()):
        found = search_scales(model.get_submodule(name), name, spec, samples.pop(name), config)
        scales.update({f'{name}.{k}': v for k, v in found.items()})
        if log and (i + 1) % 10 == 0:
            log(f'searched {i + 1}/{len(layers)} layers ({time.perf_counter() - start:.1f} s)')
    return quantize_modules(copy.deepcopy(model), layers, scales).eval()
