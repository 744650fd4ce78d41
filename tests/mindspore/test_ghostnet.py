"""GhostNet V1 / V2 / V3 twins: parity with timm's models for every variant, V3's deploy form, GRAPH mode."""
import pytest
import timm

from helpers import assert_parity, o1_torch_model
from zoo.mindspore.ghostnet import VARIANTS


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_parity_pynative(name):
    assert_parity(name, img_size=64)


@pytest.mark.parametrize('name, size', [('ghostnet_050', (72, 40)), ('ghostnetv2_100', 72)])
def test_parity_odd_sizes(name, size):
    """Odd feature maps on the way down (72 -> 9 -> 5 -> 3): strided padding and V2's pool / upsample gate."""
    assert_parity(name, img_size=size)


def test_parity_v3_deploy_form():
    model = timm.models.reparameterize_model(o1_torch_model('ghostnetv3_050', img_size=64))
    assert_parity('ghostnetv3_050', img_size=64, torch_model=model)


def test_parity_head_variants():
    assert_parity('ghostnet_050', img_size=64, num_classes=7, in_chans=1)


@pytest.mark.slow
def test_parity_graph():
    assert_parity('ghostnetv2_100', img_size=64, mode='graph')
