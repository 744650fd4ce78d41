"""TNT twins (timm's tnt_* as the zoo adopts them): the same weights give the same logits and blocks."""
import mindspore as ms
import numpy as np
import pytest

import zoo
from helpers import assert_parity
from zoo.mindspore import api
from zoo.mindspore.tnt import TNT_CONFIGS


@pytest.mark.parametrize('name', sorted(TNT_CONFIGS))
def test_parity(name):
    """TNT takes only the size it is built for (224 for the registered variants), like timm's model."""
    assert_parity(name, img_size=224)


def test_parity_other_size_classes_and_channels():
    model = zoo.create_model('tnt_s_patch16_224', img_size=96, num_classes=10, in_chans=1, global_pool='avg')
    assert_parity('tnt_s_patch16_224', img_size=96, torch_model=model.eval(), in_chans=1)


def test_parity_graph_mode():
    assert_parity('tnt_s_patch16_224', img_size=224, mode='graph')


def test_wrong_input_size_is_one_clear_error():
    cell = api.create_model('tnt_s_patch16_224')
    with pytest.raises(ValueError, match='img_size'):
        cell(ms.Tensor(np.zeros((1, 3, 112, 112), np.float32)))
