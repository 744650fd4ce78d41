"""Imports every MindSpore family module so that its twins register (see :mod:`zoo.mindspore.registry`).

Add one line here when you add a family module.
"""
import importlib

_FAMILIES = ('ghostnet', 'hiremlp', 'pyramid_tnt', 'slab', 'tnt', 'vig', 'wavemlp')  # module names under zoo.mindspore

for _family in _FAMILIES:
    importlib.import_module(f'{__package__}.{_family}')
