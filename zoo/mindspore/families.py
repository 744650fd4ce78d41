"""Imports every MindSpore family module so that its twins register (see :mod:`zoo.mindspore.registry`).

Add one line here when you add a family module.
"""
import importlib

_FAMILIES = (  # module names under zoo.mindspore, one per line
    'cgrseg',
    'ghostnet',
    'hiremlp',
    'pyramid_tnt',
    'slab',
    'squeezetime',
    'tinysam',
    'tnt',
    'vig',
    'wavemlp',
)

for _family in _FAMILIES:
    importlib.import_module(f'{__package__}.{_family}')
