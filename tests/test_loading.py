"""Checkpoint loading through timm's pretrained path: official wrappers, strictness, no unpickling."""
import argparse
import pickle

import pytest
import timm
import torch

import zoo  # noqa: F401  (allows the official checkpoints' argparse.Namespace)

NAME = 'ghostnet_050'


@pytest.fixture(scope='module')
def state_dict():
    return timm.create_model(NAME).state_dict()


def _load(path):
    return timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


@pytest.mark.parametrize('wrap', [lambda sd: sd, lambda sd: {'state_dict': sd}, lambda sd: {'model': sd},
                                  lambda sd: {'state_dict': {f'module.{k}': v for k, v in sd.items()}}],
                         ids=['plain', 'state_dict', 'model', 'ddp-prefixed'])
def test_official_wrappers_load(state_dict, wrap, tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(wrap(state_dict), path)
    loaded = _load(path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state_dict.items())


def test_official_checkpoint_with_training_args_loads(state_dict, tmp_path):
    """Official releases saved by timm-style train scripts carry an argparse.Namespace."""
    torch.save({'state_dict': state_dict, 'args': argparse.Namespace(lr=0.1, model='ghostnet')}, tmp_path / 'ckpt.pth')
    loaded = _load(tmp_path / 'ckpt.pth').state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state_dict.items())


def test_missing_keys_are_listed(state_dict, tmp_path):
    partial = dict(state_dict)
    del partial['conv_stem.weight']
    torch.save(partial, tmp_path / 'ckpt.pth')
    with pytest.raises(RuntimeError, match=r'Missing key\(s\).*conv_stem\.weight'):
        _load(tmp_path / 'ckpt.pth')


def test_extra_keys_are_listed(state_dict, tmp_path):
    torch.save(dict(state_dict, **{'head.extra.weight': torch.zeros(1)}), tmp_path / 'ckpt.pth')
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\).*head\.extra\.weight'):
        _load(tmp_path / 'ckpt.pth')


def test_mismatched_shapes_are_named(state_dict, tmp_path):
    torch.save(dict(state_dict, **{'conv_head.weight': torch.zeros(1, 1, 1, 1)}), tmp_path / 'ckpt.pth')
    with pytest.raises(RuntimeError, match='size mismatch for conv_head.weight'):
        _load(tmp_path / 'ckpt.pth')


class _Payload:
    """Unpickling this would run code: weights-only loading must refuse it."""

    def __reduce__(self):
        return (print, ('unpickled code ran',))


def test_checkpoint_with_code_is_refused(state_dict, tmp_path):
    torch.save({'state_dict': state_dict, 'payload': _Payload()}, tmp_path / 'ckpt.pth')
    with pytest.raises((pickle.UnpicklingError, RuntimeError), match='[Ww]eights.only'):
        _load(tmp_path / 'ckpt.pth')
