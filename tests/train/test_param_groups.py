"""Layer-wise lr decay (--layer-decay): groups of the trained model by depth, the network's extra parts at the
full rate, every parameter once, and timm's scheduler applying each group's scale."""
import pytest
import timm
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from zoo.train import ConfigError, parse_config
from zoo.train.param_groups import optimizer_params
from zoo.train.training_net import TrainingNet


class _Net(TrainingNet):
    """A model plus an extra trainable part, as FastMIM's decoder or GPT4Image's projection."""

    def __init__(self):
        super().__init__()
        self.student = timm.create_model('test_vit', num_classes=10)
        self.extra = nn.Linear(4, 4)


@pytest.fixture(scope='module')
def net():
    return _Net()


def _scale_of(groups, param):
    return next(g['lr_scale'] for g in groups if any(p is param for p in g['params']))


def test_scales_grow_with_depth_and_extras_learn_at_full_rate(net):
    groups = optimizer_params(net, 0.05, 0.5)
    params = [p for g in groups for p in g['params']]
    assert len(params) == len(list(net.parameters())) == len({id(p) for p in params})  # each once
    s = net.student
    stem, first, last, head = (_scale_of(groups, p) for p in (s.patch_embed.proj.weight, s.blocks[0].mlp.fc1.weight,
                                                               s.blocks[-1].mlp.fc1.weight, s.head.weight))
    assert stem < first < last < head == 1.
    assert last == pytest.approx(0.5) and first == pytest.approx(0.5 ** len(s.blocks))
    assert _scale_of(groups, net.extra.weight) == 1.
    no_decay = {id(p) for g in groups if g['weight_decay'] == 0 for p in g['params']}
    assert id(net.extra.bias) in no_decay and id(s.pos_embed) in no_decay and id(net.extra.weight) not in no_decay


def test_min_scale_is_a_floor(net):
    groups = optimizer_params(net, 0.05, 0.5, min_scale=0.2)
    assert min(g['lr_scale'] for g in groups) == pytest.approx(0.2)
    assert _scale_of(groups, net.student.blocks[-1].mlp.fc1.weight) == pytest.approx(0.5)


def test_without_layer_decay_timm_groups_the_network(net):
    assert optimizer_params(net, 0.05, None) is net


def test_scheduler_applies_each_groups_scale(net):
    optimizer = create_optimizer_v2(optimizer_params(net, 0.05, 0.5), opt='adamw', lr=1e-3, weight_decay=0.05)
    scheduler, _ = create_scheduler_v2(optimizer, sched='cosine', num_epochs=2, updates_per_epoch=5,
                                       step_on_epochs=False)
    scheduler.step_update(num_updates=1)
    for g in optimizer.param_groups:
        assert g['lr'] == pytest.approx(g['lr_scale'] * optimizer.param_groups[-1]['lr'])
    assert min(g['lr'] for g in optimizer.param_groups) < 0.2 * max(g['lr'] for g in optimizer.param_groups)


@pytest.mark.parametrize('flag,value', [('--layer-decay', '0'), ('--layer-decay', '1.5'), ('--layer-decay', 'nan'),
                                        ('--layer-decay-min-scale', '-0.1')])
def test_layer_decay_out_of_range_is_refused(flag, value):
    with pytest.raises(ConfigError, match=rf'{flag} .* out of range'):
        parse_config([flag, value])


def test_layer_decay_flags_reach_the_config():
    cfg = parse_config(['--layer-decay', '0.75', '--layer-decay-min-scale', '0.1'])
    assert (cfg.layer_decay, cfg.layer_decay_min_scale) == (0.75, 0.1) and parse_config([]).layer_decay is None
