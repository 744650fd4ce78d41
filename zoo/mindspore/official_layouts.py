"""The official MindSpore ports' parameter names as renames of the zoo's, per model (facts read off the ports in
``mindspore-ai/models/research/cv``; checked against the fixtures ``tests/fixtures/mindspore_*.json``).

- GhostNet V1 / V2 (``ghostnet``, ``ghostnetv2``): the port lists the bottlenecks flat (``blocks.<n>``, the final
  1x1 conv last) where timm nests them per stage (``blocks.<stage>.<i>``), and wraps every conv + BN pair in a unit
  with ``conv`` / ``bn`` children where timm keeps them as sequence items (``primary_conv.0`` / ``.1``,
  ``shortcut.0``-``.3``, V2's ``short_conv.0``-``.5``) or as ``conv_dw`` / ``bn_dw`` (the port's ``dw``).
- Wave-MLP (``wave_mlp``) and Hire-MLP (``HireMLP``): the same names as the zoo's.
"""
from __future__ import annotations

from .ghostnet import GHOSTNET_CFGS
from .layouts import register_official_layout

_PAIRED = ('short_conv', 'shortcut')  # conv + BN sequences: item 2k is unit k's conv, item 2k+1 its BN
_UNITS = ('primary_conv', 'cheap_operation')  # (conv, BN, act) sequences: items 0 and 1


def _stage_offsets() -> list[int]:
    offsets, total = [], 0
    for cfg in GHOSTNET_CFGS:
        offsets.append(total)
        total += len(cfg)
    return offsets + [total]  # the final 1x1 conv stage: one unit after the last bottleneck


_OFFSETS = _stage_offsets()


def _block_to_official(parts: list[str]) -> list[str]:
    out = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part in _UNITS and i + 1 < len(parts) and parts[i + 1] in ('0', '1'):
            out += [part, 'conv' if parts[i + 1] == '0' else 'bn']
            i += 2
        elif part in _PAIRED and i + 1 < len(parts) and parts[i + 1].isdigit():
            j = int(parts[i + 1])
            out += [part, str(j // 2), 'conv' if j % 2 == 0 else 'bn']
            i += 2
        elif part in ('conv_dw', 'bn_dw'):
            out += ['dw', 'conv' if part == 'conv_dw' else 'bn']
            i += 1
        else:
            out.append(part)
            i += 1
    return out


def _block_from_official(parts: list[str]) -> list[str]:
    out = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part in _UNITS and i + 1 < len(parts) and parts[i + 1] in ('conv', 'bn'):
            out += [part, '0' if parts[i + 1] == 'conv' else '1']
            i += 2
        elif part in _PAIRED and i + 2 < len(parts) and parts[i + 1].isdigit() and parts[i + 2] in ('conv', 'bn'):
            out += [part, str(2 * int(parts[i + 1]) + (parts[i + 2] == 'bn'))]
            i += 3
        elif part == 'dw' and i + 1 < len(parts) and parts[i + 1] in ('conv', 'bn'):
            out.append('conv_dw' if parts[i + 1] == 'conv' else 'bn_dw')
            i += 2
        else:
            out.append(part)
            i += 1
    return out


def ghostnet_to_official(key: str, name: str = '') -> str:
    """``blocks.<stage>.<i>.…`` -> ``blocks.<flat>.…`` with conv / bn units; other names unchanged."""
    parts = key.split('.')
    if parts[0] != 'blocks' or len(parts) < 4 or not (parts[1].isdigit() and parts[2].isdigit()):
        return key
    stage, index = int(parts[1]), int(parts[2])
    flat = str(_OFFSETS[stage] + index)
    if stage == len(GHOSTNET_CFGS):  # the final ConvBnAct: conv, bn1 -> conv, bn
        return '.'.join(['blocks', flat, 'bn' if parts[3] == 'bn1' else parts[3]] + parts[4:])
    return '.'.join(['blocks', flat] + _block_to_official(parts[3:]))


def ghostnet_from_official(key: str, name: str = '') -> str:
    """Inverse of :func:`ghostnet_to_official`."""
    parts = key.split('.')
    if parts[0] != 'blocks' or len(parts) < 3 or not parts[1].isdigit():
        return key
    flat = int(parts[1])
    stage = max(s for s, offset in enumerate(_OFFSETS) if offset <= flat)
    index = str(flat - _OFFSETS[stage])
    if stage == len(GHOSTNET_CFGS):
        return '.'.join(['blocks', str(stage), index, 'bn1' if parts[2] == 'bn' else parts[2]] + parts[3:])
    return '.'.join(['blocks', str(stage), index] + _block_from_official(parts[2:]))


def _same(key: str, name: str = '') -> str:
    return key


register_official_layout(('ghostnet_100', 'ghostnetv2_100'), ghostnet_to_official, ghostnet_from_official)
register_official_layout(('wavemlp_t_dw', 'wavemlp_t', 'wavemlp_s', 'wavemlp_m', 'wavemlp_b'), _same, _same)
register_official_layout(('hire_mlp_tiny', 'hire_mlp_small', 'hire_mlp_base', 'hire_mlp_large'), _same, _same)
