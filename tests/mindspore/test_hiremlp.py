"""Hire-MLP twins: parity with the zoo's torch models for every variant, padded regions, GRAPH mode, and the
shift direction (the official MindSpore port's is the opposite of the PyTorch code's; parity must catch it)."""
import pytest

from helpers import assert_parity
from zoo.mindspore import hiremlp
from zoo.mindspore.hiremlp import VARIANTS


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_parity_pynative(name):
    assert_parity(name, img_size=64)


def test_parity_padded_regions():
    """72 -> 18, 9, 5, 3 (not multiples of the region sizes 4, 3, 3, 2): circular padding and cropping."""
    assert_parity('hire_mlp_tiny', img_size=(72, 40))


def test_opposite_shift_fails_parity(monkeypatch):
    forward_roll = hiremlp.roll
    monkeypatch.setattr(hiremlp, 'roll', lambda x, shift, dim: forward_roll(x, -shift, dim))
    with pytest.raises(AssertionError, match='worst relative difference'):
        assert_parity('hire_mlp_tiny', img_size=64)


@pytest.mark.slow
def test_parity_graph():
    assert_parity('hire_mlp_tiny', img_size=64, mode='graph')
