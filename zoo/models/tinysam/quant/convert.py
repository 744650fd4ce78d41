"""The official Q-TinySAM release -> zoo's Q-TinySAM file, read without running any of the release's code.

``tinysam_w8a8.pth`` is ``torch.save(model)`` of the official quantized SAM: a pickle that names the official
classes (``tinysam.modeling.*``, ``quantization_layer.layers.InferQuant*``) and, loaded the usual way, imports
them and lets the pickle call them. zoo never does that. Instead:

1. ``torch.serialization.get_unsafe_globals_in_checkpoint`` lists the classes the pickle names by reading its
   opcodes (nothing runs);
2. each name gets an inert stand-in, :class:`PickledObject`, which only records what the pickle hands it;
3. ``torch.load(weights_only=True)``, torch's restricted unpickler, reads the archive with the stand-ins
   allow-listed under those names: it rebuilds tensors and calls nothing but torch's allow-listed functions
   and the stand-ins (modules ``os``, ``sys``, ``posix``, ``nt`` stay blocked whatever is allow-listed).

What comes back is a tree of module ``__dict__`` records: parameters, buffers, submodules and plain attributes
(bit widths, ``mode``). :func:`convert_w8a8_checkpoint` turns it into a zoo Q-TinySAM state dict and layer list.

    python -m zoo.sam convert-w8a8 tinysam_w8a8.pth tinysam_w8a8_zoo.safetensors
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Union

import torch

from ..utils.layout import to_zoo_name
from .quantize import QuantLayer

__all__ = ['PickledObject', 'read_pickled_module', 'convert_w8a8_checkpoint', 'ConvertedCheckpoint']

PathLike = Union[str, os.PathLike]

# official quantized layer classes (tinysam/quantization_layer/layers.py) -> zoo kinds
_OFFICIAL_KINDS = {'InferQuantLinear': 'linear', 'InferQuantLinearPost': 'linear_post_gelu',
                   'InferQuantConv2d': 'conv2d', 'InferQuantConvTranspose2d': 'conv_transpose2d'}
# official attention-product quantizers: the official forward multiplies with `@` and never calls them
_OFFICIAL_MATMULS = ('InferQuantMatMul', 'InferQuantMatMulPost')
# official buffer -> zoo scale; the block counts (n_V, crb_rows, ...) become the scales' shapes
_LINEAR_SCALES = {'w_interval': 'weight_scale', 'a_interval': 'input_scale', 'a_neg_interval': 'input_neg_scale'}
_CONV_SCALES = {'w_interval': 'weight_scale', 'a_interval': 'input_scale', 'a_bias': 'input_offset'}
_BLOCK_COUNTS = ('n_V', 'n_H', 'n_a', 'crb_rows', 'crb_cols', 'crb_acts')


class PickledObject:
    """Inert stand-in for a class a pickle names: keeps the arguments and state the pickle passes, runs nothing."""
    pickled_name = '?'

    def __init__(self, *args: Any):
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f'<stand-in for {self.pickled_name}>'


def _stand_in(full_name: str) -> type:
    module, _, name = full_name.rpartition('.')
    return type(name, (PickledObject,), {'pickled_name': full_name, '__module__': module, '__qualname__': name})


def read_pickled_module(path: PathLike) -> PickledObject:
    """The pickled object of a ``torch.save`` archive, every class it names replaced by an inert stand-in."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no checkpoint at {path!r}')
    if not zipfile.is_zipfile(path):
        raise ValueError(f'{path!r} is not a torch.save zip archive (legacy or other formats are not read)')
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as e:  # a pickle opcode the static reader does not know
        raise ValueError(f'{path!r}: its pickle cannot be read without running it ({type(e).__name__}: {e})') from e
    with torch.serialization.safe_globals([_stand_in(n) for n in names]):
        try:
            return torch.load(path, map_location='cpu', weights_only=True)
        except (pickle.UnpicklingError, RuntimeError) as e:
            raise ValueError(f'{path!r}: refused to unpickle ({e})') from e


@dataclass
class _Module:
    path: str
    cls: str
    tensors: Dict[str, torch.Tensor]
    attrs: Dict[str, Any]


def _walk(obj: Any, path: str = '') -> Iterator[_Module]:
    state = obj.state if isinstance(obj, PickledObject) else None
    if not isinstance(state, dict) or not isinstance(state.get('_modules'), dict):
        raise ValueError(f'{path or "the checkpoint"} is not a pickled torch module (found {obj!r}); expected '
                         f'the official tinysam_w8a8.pth, a whole pickled SAM')
    skip = state.get('_non_persistent_buffers_set') or set()
    tensors = {k: v for k, v in {**state.get('_parameters', {}), **state.get('_buffers', {})}.items()
               if v is not None and k not in skip}
    odd = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise ValueError(f'{path or "the checkpoint"}: parameters or buffers {odd} are not tensors')
    tensors = {k: v.detach() for k, v in tensors.items()}
    attrs = {k: v for k, v in state.items() if not k.startswith('_') and isinstance(v, (bool, int, float, str))}
    yield _Module(path, obj.pickled_name, tensors, attrs)
    for name, child in state['_modules'].items():
        if child is not None:
            yield from _walk(child, f'{path}.{name}' if path else name)


@dataclass
class ConvertedCheckpoint:
    """A zoo Q-TinySAM state dict, its quantized layers, and what the conversion left out."""
    state_dict: Dict[str, torch.Tensor]
    layers: Dict[str, QuantLayer]
    float_layers: List[str] = field(default_factory=list)
    dropped_matmuls: List[str] = field(default_factory=list)

    def summary(self) -> str:
        kinds = Counter(f'{s.kind} W{s.weight_bits}A{s.input_bits}' for s in self.layers.values())
        lines = [f'{len(self.layers)} quantized layers: ' + ', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))]
        if self.float_layers:
            lines.append(f'{len(self.float_layers)} quantized layers in raw (float) mode kept in float: '
                         f'{self.float_layers[:3]}')
        if self.dropped_matmuls:
            lines.append(f'{len(self.dropped_matmuls)} attention-product quantizers left out: the official forward '
                         f'never calls them (it multiplies with @), e.g. {self.dropped_matmuls[:2]}')
        return '\n'.join(lines)


def _bits(attrs: Dict[str, Any], qmax_name: str, bit_name: str, path: str) -> int:
    """Bit width from the qmax the official forward clamps with (2^(b-1)), else from the declared width."""
    qmax = attrs.get(qmax_name)
    if qmax is None:
        if bit_name not in attrs:
            raise ValueError(f'{path}: neither {qmax_name} nor {bit_name} is recorded')
        return int(attrs[bit_name])
    if qmax < 2 or qmax & (qmax - 1):
        raise ValueError(f'{path}: {qmax_name}={qmax} is not a power of two')
    return int(qmax).bit_length()


def _quant_scales(module: _Module, kind: str, float_input: bool) -> Dict[str, torch.Tensor]:
    t = module.tensors
    names = _LINEAR_SCALES if kind.startswith('linear') else _CONV_SCALES
    if kind == 'linear':
        names = {k: v for k, v in names.items() if k != 'a_neg_interval'}
    if float_input:
        names = {'w_interval': 'weight_scale'}
    missing = [k for k in names if k not in t]
    if missing:
        raise ValueError(f'{module.path}: quantized layer without {missing} (was it ever calibrated?)')
    scales = {zoo: t[official].float() for official, zoo in names.items()}
    if kind.startswith('linear'):
        count = {k: int(t[k]) for k in _BLOCK_COUNTS}
        out_f, in_f = t['weight'].shape
        if count['n_V'] * count['crb_rows'] != out_f or count['n_H'] * count['crb_cols'] != in_f \
                or count['n_a'] * count['crb_acts'] != in_f:
            raise ValueError(f'{module.path}: blocks {count} do not tile the {out_f} x {in_f} weight')
        scales['weight_scale'] = scales['weight_scale'].reshape(count['n_V'], 1, count['n_H'], 1)
        scales['input_scale'] = scales['input_scale'].reshape(count['n_a'], 1)
    return scales


def convert_w8a8_checkpoint(path: PathLike) -> ConvertedCheckpoint:
    """Read the official Q-TinySAM release (safely, see the module docstring) into zoo's layout."""
    root = read_pickled_module(path)
    if isinstance(root, dict):
        raise ValueError(f'{os.fspath(path)!r} is a plain state dict, not the pickled quantized model; float '
                         f'TinySAM weights load with create_sam("tinysam", checkpoint=...)')
    state_dict: Dict[str, torch.Tensor] = {}
    out = ConvertedCheckpoint(state_dict, {})
    for module in _walk(root):
        cls_name = module.cls.rpartition('.')[2]
        prefix = module.path + '.' if module.path else ''
        if cls_name in _OFFICIAL_MATMULS:
            out.dropped_matmuls.append(module.path)
            continue
        kind = _OFFICIAL_KINDS.get(cls_name)
        weights = {k: v for k, v in module.tensors.items() if kind is None or k in ('weight', 'bias')}
        state_dict.update({to_zoo_name(prefix + k): v for k, v in weights.items()})
        if kind is None:
            continue
        mode = module.attrs.get('mode')
        if mode == 'raw':
            out.float_layers.append(to_zoo_name(module.path))
            continue
        if mode != 'quant_forward':
            raise ValueError(f'{module.path}: unknown quantization mode {mode!r} (official modes: raw, quant_forward)')
        zoo_path = to_zoo_name(module.path)
        # the official convolutions skip input quantization from 32 bits on; a_qmax then means nothing
        float_input = kind.startswith('conv') and module.attrs.get('a_bit', 8) >= 32
        in_bits = int(module.attrs['a_bit']) if float_input else _bits(module.attrs, 'a_qmax', 'a_bit', module.path)
        out.layers[zoo_path] = QuantLayer(kind, _bits(module.attrs, 'w_qmax', 'w_bit', module.path), in_bits)
        state_dict.update({f'{zoo_path}.{k}': v for k, v in _quant_scales(module, kind, float_input).items()})
    if not out.layers:
        raise ValueError(f'{os.fspath(path)!r} holds a pickled module without quantized layers; not Q-TinySAM')
    return out
