"""Registration: zoo models are timm models, listed by the zoo, never shadowing timm names."""
import subprocess
import sys

import pytest
import timm

import zoo
from zoo.registry import adopt_timm_models, register_model


def test_every_zoo_model_is_a_timm_model():
    names = zoo.list_models()
    assert names and names == sorted(names)
    assert all(timm.is_model(n) for n in names)


def test_list_models_filters():
    assert zoo.list_models('ghostnetv2_*') == ['ghostnetv2_100', 'ghostnetv2_130', 'ghostnetv2_160']
    assert zoo.list_models(['ghostnet_1*', 'ghostnetv3_050']) == ['ghostnet_100', 'ghostnet_130', 'ghostnetv3_050']
    assert set(zoo.list_models(family='ghostnet')) <= set(zoo.list_models(task='classification'))
    assert 'ghostnet' in zoo.list_families()
    assert zoo.list_models('no_such_*') == []


def test_no_timm_name_is_shadowed():
    """In a fresh interpreter: record timm's registry, import zoo, fail on any 'Overwriting' warning."""
    code = '''
import warnings, timm
before = set(timm.list_models())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import zoo
overwrites = [str(w.message) for w in caught if 'Overwriting' in str(w.message)]
assert not overwrites, overwrites
owned = [n for n in zoo.list_models() if not zoo.model_info(n).adopted]
clash = sorted(set(owned) & before)
assert not clash, clash
adopted = [n for n in zoo.list_models() if zoo.model_info(n).adopted]
assert set(adopted) <= before
print(len(owned), len(adopted))
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_register_refuses_a_timm_name():
    def resnet50(pretrained=False, **kwargs):  # same name as a timm built-in
        raise AssertionError('never called')

    with pytest.raises(ValueError, match='shadow'):
        register_model(resnet50)
    assert not zoo.is_zoo_model('resnet50')


def test_adopt_refuses_a_missing_timm_model():
    with pytest.raises(RuntimeError, match='no model'):
        adopt_timm_models('ghostnet', ['ghostnet_999'])


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(zoo.UnknownModelError, match="did you mean.*ghostnetv3_100"):
        zoo.create_model('ghostnetv3_10')
    with pytest.raises(ValueError):  # UnknownModelError is a ValueError
        zoo.model_info('not_a_model_at_all_xyz')


def test_model_name_must_be_a_string():
    with pytest.raises(TypeError, match='str'):
        zoo.create_model(None)


def test_create_model_passes_timm_arguments():
    model = zoo.create_model('ghostnet_050', num_classes=3, in_chans=1)
    assert model.num_classes == 3
    assert model.conv_stem.in_channels == 1
