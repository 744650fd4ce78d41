"""The paradigm table: every record is consistent with the configuration, and a new paradigm is one entry."""
from dataclasses import fields

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.train import ConfigError, TrainConfig, make_config, train
from zoo.train.checkpoint import load_checkpoint
from zoo.train.distill import DISTILLATIONS
from zoo.train.paradigm import PARADIGMS, Paradigm
from zoo.train.training_net import TrainingNet

CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}


@pytest.mark.parametrize('name', list(PARADIGMS))
def test_records_name_real_config_fields(name):
    paradigm = PARADIGMS[name]
    assert paradigm.name == name
    assert set(paradigm.config_fields) <= CONFIG_FIELDS
    assert set(paradigm.defaults) <= CONFIG_FIELDS


def test_unknown_names_list_the_tables():
    with pytest.raises(ConfigError, match='paradigm must be one of supervised, fastmim, gpt4image'):
        make_config({'paradigm': 'simclr'})
    with pytest.raises(ConfigError, match='distill must be one of none, kd, soft_ce, ofa'):
        make_config({'distill': 'dkd', 'teacher': 'test_resnet'})
    assert set(DISTILLATIONS) == {'kd', 'soft_ce', 'ofa'}


def test_defaults_sit_beneath_recipe_and_flags():
    assert make_config({'paradigm': 'fastmim'}).lr == PARADIGMS['fastmim'].defaults['lr'] != TrainConfig.lr
    assert make_config({'paradigm': 'fastmim', 'lr': 2e-3}).lr == 2e-3


class _CenteredNet(TrainingNet):
    """A toy paradigm's network: the student plus a trainable offset it learns beside it."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student
        self.offset = nn.Linear(1, 1)

    def aux_modules(self) -> dict[str, nn.Module]:
        return {'offset': self.offset}

    def forward(self, x: torch.Tensor):
        logits = self.student(x)
        return logits, self.offset(logits.mean(-1, keepdim=True))


def _toy_objective(cfg: TrainConfig, mixup_active: bool):
    def terms(logits, shift, target, teacher_logits):
        return {'ce': F.cross_entropy(logits, target), 'shift': shift.pow(2).mean()}
    return terms


def test_a_new_paradigm_is_one_table_entry(tmp_path, monkeypatch):
    checked = []
    toy = Paradigm('toy', 'cross-entropy plus a learned offset', lambda cfg, student, teacher, n: _CenteredNet(student),
                   _toy_objective, validate=checked.append, defaults={'lr': 5e-4})
    monkeypatch.setitem(PARADIGMS, 'toy', toy)
    cfg = make_config(dict(model='test_resnet', img_size=32, epochs=1, batch_size=16, max_steps_per_epoch=2,
                           progress=False, output=str(tmp_path / 'run'), paradigm='toy'))
    assert cfg.lr == 5e-4 and checked == [cfg]
    summary = train(cfg)
    assert summary['final_top1'] is not None  # has_classifier: scored by top-1
    ckpt = load_checkpoint(tmp_path / 'run' / 'last.pth')
    assert set(ckpt['offset']) == {'weight', 'bias'}  # its extra module is saved for --resume
    assert {'train_loss_ce', 'train_loss_shift'} <= set(ckpt['history'][0])
    resumed = train(make_config({**cfg.to_dict(), 'epochs': 2, 'resume': True}))
    assert resumed['epochs'] == 2
