"""Q-TinySAM: which layers of TinySAM are quantized, swapping them in, and zoo's file of a quantized model.

A quantized model is a float :class:`~zoo.models.tinysam.modeling.TinySam` whose listed layers are replaced by the
fake-quantized layers of :mod:`.layers`. The list (layer name -> :class:`QuantLayer`) travels with the
weights: zoo's Q-TinySAM file is a safetensors file whose metadata holds it, so the model can be rebuilt from
the file alone.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from .layers import QUANT_LAYERS

__all__ = ['QuantLayer', 'default_quant_layers', 'quantize_modules', 'save_quantized', 'load_quantized',
           'QUANT_FORMAT']

QUANT_FORMAT = 'zoo.tinysam_w8a8/1'
PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class QuantLayer:
    """How one layer is quantized: its kind (a key of ``QUANT_LAYERS``) and bit widths."""
    kind: str
    weight_bits: int = 8
    input_bits: int = 8

    def __post_init__(self):
        if self.kind not in QUANT_LAYERS:
            raise ValueError(f'unknown quantized layer kind {self.kind!r}; known: {sorted(QUANT_LAYERS)}')


def default_quant_layers(model: nn.Module, weight_bits: int = 8, input_bits: int = 8) -> Dict[str, QuantLayer]:
    """Every linear, convolution and transposed convolution that segmenting runs through, as in Q-TinySAM.

    Left in float: the encoder's classifier head (SAM never calls it) and the prompt encoder's mask
    downscaling (it only runs for mask prompts, which calibration does not feed). A linear layer that reads
    a GELU output (the encoder MLPs' ``fc2``) gets the two-scale post-GELU quantizer.
    """
    layers = {}
    for name, module in model.named_modules():
        if name == 'image_encoder.head' or name.startswith('prompt_encoder.'):
            continue
        if isinstance(module, nn.Linear):
            post_gelu = name.startswith('image_encoder.') and name.endswith('.mlp.fc2')
            kind = 'linear_post_gelu' if post_gelu else 'linear'
        elif isinstance(module, nn.ConvTranspose2d):
            kind = 'conv_transpose2d'
        elif isinstance(module, nn.Conv2d):
            kind = 'conv2d'
        else:
            continue
        layers[name] = QuantLayer(kind, weight_bits, input_bits)
    return layers


def quantize_modules(model: nn.Module, layers: Mapping[str, QuantLayer],
                     scales: Optional[Mapping[str, torch.Tensor]] = None) -> nn.Module:
    """Replace each listed float layer of ``model`` (in place) by its quantized form.

    ``scales`` maps ``'<layer>.<scale name>'`` to tensors (e.g. a state dict); missing scales get per-tensor
    placeholders, to be filled by ``load_state_dict`` or calibration.
    """
    scales = scales or {}
    for name, spec in layers.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f'the model has no layer {name!r} to quantize') from None
        cls = QUANT_LAYERS[spec.kind]
        if type(module) is not cls.float_type:
            raise ValueError(f'layer {name!r} is a {type(module).__name__}, but a {spec.kind!r} quantized layer '
                             f'replaces a {cls.float_type.__name__}')
        own = {key[len(name) + 1:]: v for key, v in scales.items()
               if key.startswith(name + '.') and key[len(name) + 1:] in cls.scale_defaults}
        quantized = cls.from_float(module, spec.weight_bits, spec.input_bits, own)
        parent, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent) if parent else model, child, quantized)
    return model


def save_quantized(path: PathLike, state_dict: Mapping[str, torch.Tensor], layers: Mapping[str, QuantLayer]) -> None:
    """Write a Q-TinySAM state dict (zoo layout) and its quantized-layer list as one safetensors file."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {'format': QUANT_FORMAT, 'quant_layers': json.dumps({k: asdict(v) for k, v in layers.items()})}
    save_file(tensors, os.fspath(path), metadata=meta)


def load_quantized(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, QuantLayer]]:
    """Read a file written by :func:`save_quantized`: (state dict, quantized layers)."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    try:
        with safe_open(path, framework='pt') as f:
            meta = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f'{path!r} is not a safetensors file ({e})') from e
    if meta.get('format') != QUANT_FORMAT:
        raise ValueError(f'{path!r} is a safetensors file but not a zoo Q-TinySAM file (format '
                         f'{meta.get("format")!r}, expected {QUANT_FORMAT!r})')
    layers = {k: QuantLayer(**v) for k, v in json.loads(meta['quant_layers']).items()}
    return state_dict, layers
