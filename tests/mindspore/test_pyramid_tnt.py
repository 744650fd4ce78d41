"""PyramidTNT twins: the same weights give the same logits and stages as torch (issue #25)."""
import mindspore as ms
import numpy as np
import pytest

from helpers import assert_parity
from zoo.mindspore import api
from zoo.mindspore.pyramid_tnt import PYRAMID_TNT_CONFIGS


@pytest.mark.parametrize('name', sorted(PYRAMID_TNT_CONFIGS))
def test_parity_small_input(name):
    """At 64 x 64 ``outer_pos`` and every stage's attention bias are resampled, as torch does."""
    assert_parity(name, img_size=64)


@pytest.mark.parametrize('img_size', [192, (88, 72)], ids=['native', 'odd-grids'])
def test_parity_native_and_odd_grids(img_size):
    """At the stored size the tables are used as they are; odd grids zero-pad the word merges.

    Not (80, 48): there a key grid is 2 x 1, and torch 2.x's antialiased bicubic resize to a width of 1 gives
    every output row the first row's weights (a torch defect the twin does not copy)."""
    assert_parity('ptnt_ti_patch16_192', img_size=img_size)


def test_parity_other_classes_and_channels():
    assert_parity('ptnt_ti_patch16_192', img_size=64, num_classes=10, in_chans=1)


def test_parity_graph_mode():
    assert_parity('ptnt_ti_patch16_192', img_size=64, mode='graph')


def test_input_size_the_model_cannot_take_is_one_clear_error():
    cell = api.create_model('ptnt_ti_patch16_192')
    with pytest.raises(ValueError, match='multiples of 8'):
        cell(ms.Tensor(np.zeros((1, 3, 60, 60), np.float32)))
