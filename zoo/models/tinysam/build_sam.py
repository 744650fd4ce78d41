"""Building and loading TinySAM: ``create_sam`` (float TinySAM, or Q-TinySAM, its W8A8 fake-quantized variant),
the architecture builders, and the official checkpoints' readers (as segment-anything's ``build_sam``)."""
from __future__ import annotations

import os
import zipfile
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from timm.models._hub import download_cached_file

from ...registry import WEIGHTS_NAME, HubError, hub_config, hub_file, hub_source
from ...state_dicts import compare_state_dict, unwrap_state_dict
from .modeling import MaskDecoder, PromptEncoder, TinySam, TinySamImageEncoder, TwoWayTransformer
from .modeling.image_encoder import RELEASE_URL
from .quant.convert import convert_w8a8_checkpoint
from .quant.quantize import QuantLayer, default_quant_layers, load_quantized, quantize_modules
from .utils.layout import to_zoo_layout

__all__ = ['create_sam', 'build_tinysam', 'build_tinysam_w8a8', 'load_sam_checkpoint', 'load_quantized_checkpoint',
           'SAM_MODELS', 'SAM_URLS']

QUANT_RELEASE_URL = 'https://github.com/xinghaochen/TinySAM/releases/download/2.0/tinysam_w8a8.pth'


def build_tinysam(img_size: int = 1024, prompt_embed_dim: int = 256) -> TinySam:
    """TinySAM's architecture (10.13M parameters) with fresh weights."""
    grid = img_size // 16
    return TinySam(
        image_encoder=TinySamImageEncoder(img_size=img_size, out_chans=prompt_embed_dim),
        prompt_encoder=PromptEncoder(prompt_embed_dim, (grid, grid), (img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(prompt_embed_dim, TwoWayTransformer(2, prompt_embed_dim, 8, 2048),
                                 num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256),
    )


def build_tinysam_w8a8(layers: Optional[Mapping[str, QuantLayer]] = None,
                       scales: Optional[Mapping[str, torch.Tensor]] = None, img_size: int = 1024) -> TinySam:
    """Q-TinySAM's architecture: TinySAM with the ``layers`` (default: :func:`default_quant_layers`) fake-quantized.

    ``scales`` (e.g. the state dict about to be loaded) gives the quantizers' scale tensors; without it they are
    per-tensor placeholders, to be filled by a checkpoint or by calibration.
    """
    model = build_tinysam(img_size)
    return quantize_modules(model, default_quant_layers(model) if layers is None else layers, scales)


SAM_MODELS = {'tinysam': build_tinysam, 'tinysam_w8a8': build_tinysam_w8a8}
SAM_URLS = {'tinysam': RELEASE_URL, 'tinysam_w8a8': QUANT_RELEASE_URL}


def load_sam_checkpoint(model: TinySam, checkpoint: Union[str, os.PathLike, Dict[str, torch.Tensor]]) -> TinySam:
    """Load an official TinySAM state dict (a path or a dict; may be wrapped in 'model' / 'state_dict' or carry
    DistributedDataParallel's ``module.`` prefix)."""
    if isinstance(checkpoint, (str, os.PathLike)) and os.fspath(checkpoint).endswith('.safetensors'):
        from safetensors.torch import load_file
        checkpoint = load_file(os.fspath(checkpoint))  # a zoo Hub folder's model.safetensors
    if isinstance(checkpoint, (str, os.PathLike)):
        try:
            checkpoint = torch.load(checkpoint, map_location='cpu', weights_only=True)
        except Exception as e:  # e.g. a pickled whole model such as the W8A8 release
            raise ValueError(
                f'{os.fspath(checkpoint)!r} is not a plain state dict that loads with weights_only=True '
                f'({type(e).__name__}); if it is the W8A8 release tinysam_w8a8.pth (a pickled module), load it '
                f'with create_sam("tinysam_w8a8", checkpoint=...)') from e
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'expected a state dict, got {type(checkpoint).__name__}')
    state_dict = to_zoo_layout(unwrap_state_dict(checkpoint))
    if any(k.endswith('.weight_scale') for k in state_dict):
        raise ValueError('checkpoint holds quantization scales: it is a Q-TinySAM checkpoint; load it with '
                         'create_sam("tinysam_w8a8", checkpoint=...)')
    _load_strict(model, state_dict)
    return model


def _load_strict(model: TinySam, state_dict: Dict[str, torch.Tensor]) -> None:
    mismatch = compare_state_dict(state_dict, model.state_dict())
    if mismatch:
        raise ValueError(f'checkpoint is not a TinySAM checkpoint: {mismatch.describe(3)}; a checkpoint of SAM '
                         f'ViT-H/L/B or another model does not fit TinySAM')
    model.load_state_dict(state_dict)


def load_quantized_checkpoint(
        checkpoint: Union[str, os.PathLike]) -> Tuple[Dict[str, torch.Tensor], Dict[str, QuantLayer]]:
    """(state dict, quantized layers) of a Q-TinySAM file: zoo's safetensors file (written by the converter or by
    calibration), or the official ``tinysam_w8a8.pth``, converted on the fly without running its pickle."""
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no Q-TinySAM checkpoint at {path!r}')
    if zipfile.is_zipfile(path):  # torch.save archive: the official release
        converted = convert_w8a8_checkpoint(path)
        return converted.state_dict, converted.layers
    return load_quantized(path)


def create_sam(name: str = 'tinysam', checkpoint: Optional[Union[str, os.PathLike, Dict[str, torch.Tensor]]] = None,
               pretrained: bool = False, device: Union[str, torch.device] = 'cpu') -> TinySam:
    """Build a SAM model in eval mode.

    Args:
        name: 'tinysam', or 'tinysam_w8a8' (Q-TinySAM, fake-quantized W8A8), or a folder written by
            ``python -m zoo.hub save``: 'hf-hub:ORG/NAME' or 'local-dir:PATH' (its config.json names which).
        checkpoint: for 'tinysam', the official ``tinysam_42.3.pth`` (a path) or a state dict; for
            'tinysam_w8a8', the official ``tinysam_w8a8.pth`` (read without unpickling code) or a zoo
            Q-TinySAM ``.safetensors`` file (from the converter or from calibration).
        pretrained: download the official release (for a Hub name: the folder's weights) when no ``checkpoint``
            is given.
        device: where to put the model.
    """
    if hub_source(name) is not None:
        name, checkpoint = _hub_architecture_and_weights(name, checkpoint, pretrained)
        pretrained = False
    if name not in SAM_MODELS:
        raise ValueError(f'unknown SAM model {name!r}; available: {sorted(SAM_MODELS)}')
    if checkpoint is None and pretrained:
        # a file, not a state dict: the W8A8 release is a pickled module that only its converter may read
        checkpoint = download_cached_file(SAM_URLS[name], progress=True)
    if name == 'tinysam_w8a8':
        model = _create_quantized(checkpoint)
    else:
        model = build_tinysam()
        if checkpoint is not None:
            load_sam_checkpoint(model, checkpoint)
    return model.to(device).eval()


def _hub_architecture_and_weights(name: str, checkpoint: Any, pretrained: bool) -> Tuple[str, Optional[str]]:
    """(SAM architecture, local path of its weights or None) of a 'hf-hub:' / 'local-dir:' folder."""
    if checkpoint is not None:
        raise ValueError(f'{name} brings its own weights; pass either a Hub name or checkpoint=, not both')
    cfg = hub_config(name)
    if cfg.architecture not in SAM_MODELS:
        raise HubError(f'{name} holds {cfg.architecture}, not a SAM: build it with '
                       f'zoo.create_model({name!r}, pretrained=True)')
    return cfg.architecture, os.fspath(hub_file(name, WEIGHTS_NAME)) if pretrained else None


def _create_quantized(checkpoint: Optional[Union[str, os.PathLike, Dict[str, torch.Tensor]]]) -> TinySam:
    if checkpoint is None:
        return build_tinysam_w8a8()
    if isinstance(checkpoint, dict):
        raise ValueError('Q-TinySAM loads from a file (its quantized-layer list travels with the weights): the '
                         'official tinysam_w8a8.pth or a zoo .safetensors file')
    state_dict, layers = load_quantized_checkpoint(checkpoint)
    model = build_tinysam_w8a8(layers, state_dict)
    _load_strict(model, state_dict)
    return model
