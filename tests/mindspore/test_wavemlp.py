"""Wave-MLP twins: parity with the zoo's torch models for every variant, odd sizes, GRAPH mode."""
import pytest

from helpers import assert_parity
from zoo.mindspore.wavemlp import VARIANTS


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_parity_pynative(name):
    assert_parity(name, img_size=64)


def test_parity_odd_size_and_head():
    """Non-square odd maps (76x44 -> 19x11 ... 3x2) through the 7-tap mixing, with another head and input."""
    assert_parity('wavemlp_t_dw', img_size=(76, 44), num_classes=5, in_chans=1, global_pool='avg')


@pytest.mark.slow
def test_parity_graph():
    assert_parity('wavemlp_t', img_size=64, mode='graph')
