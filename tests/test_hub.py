"""torch.hub entry points come from the registry and build models."""
import importlib.util
from pathlib import Path

import torch

import zoo

REPO = Path(__file__).resolve().parents[1]


def _hubconf():
    spec = importlib.util.spec_from_file_location('zoo_hubconf', REPO / 'hubconf.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hubconf_has_one_entry_per_zoo_model():
    # torch.hub.list() only reads GitHub repos; this is the same rule applied to the local file.
    hubconf = _hubconf()
    entries = sorted(n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith('_'))
    assert entries == sorted(zoo.list_models() + list(hubconf.EXTRA_ENTRIES))
    assert 'ghostnet' in hubconf.ghostnetv3_100.__doc__


def test_hub_load_builds_the_model():
    model = torch.hub.load(str(REPO), 'ghostnet_050', source='local', num_classes=4)
    assert model.num_classes == 4
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 4)
