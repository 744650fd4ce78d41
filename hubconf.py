"""torch.hub entry points: one per zoo model, generated from the registry (no list to drift).

    model = torch.hub.load('<owner>/zoo', 'ghostnetv3_100', pretrained=True)
    model = torch.hub.load('/path/to/zoo', 'vig_s_224_gelu', source='local', num_classes=10)

Every entry takes the keyword arguments of ``timm.create_model``.
"""
import os as _os
import sys as _sys

dependencies = ['torch', 'timm', 'torchvision', 'safetensors', 'yaml', 'huggingface_hub']

_here = _os.path.dirname(_os.path.abspath(__file__))
if _here not in _sys.path:  # torch.hub imports this file from a downloaded copy, where zoo is not installed
    _sys.path.insert(0, _here)

import zoo as _zoo  # noqa: E402


def _entrypoint(name: str):
    def entry(pretrained: bool = False, **kwargs):
        return _zoo.create_model(name, pretrained=pretrained, **kwargs)

    info = _zoo.model_info(name)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f'{name} ({info.family} family, {info.task}). pretrained=True loads the released '
                     f'weights; other keyword arguments go to timm.create_model.')
    return entry


globals().update({_name: _entrypoint(_name) for _name in _zoo.list_models()})


def tinysam(pretrained: bool = False, **kwargs):
    """TinySAM (image encoder, prompt encoder, mask decoder); pretrained=True loads tinysam_42.3.pth.
    Use zoo.models.tinysam.SamPredictor(model) for prompts."""
    return _zoo.create_sam('tinysam', pretrained=pretrained, **kwargs)


def tinysam_w8a8(pretrained: bool = False, **kwargs):
    """Q-TinySAM (W8A8 post-training quantized TinySAM, fake quantization); pretrained=True reads the official
    tinysam_w8a8.pth without unpickling its code. checkpoint= also takes a zoo Q-TinySAM .safetensors file."""
    return _zoo.create_sam('tinysam_w8a8', pretrained=pretrained, **kwargs)


#: Entries beyond the registry's one-per-model (whole systems built from several registered parts).
EXTRA_ENTRIES = ('tinysam', 'tinysam_w8a8')
