"""OFA-KD branches across heterogeneous student/teacher pairs, from feature_info alone."""
import pytest
import timm
import torch

import zoo  # noqa: F401
from zoo.train import make_config
from zoo.train.distill import Objective, StudentNet
from zoo.train.losses import build_criterion
from zoo.train.ofa import resolve_stage_indices


@pytest.mark.parametrize('student_name, teacher_name', [
    ('ghostnet_050', 'test_vit'),      # CNN student, transformer teacher
    ('test_vit', 'test_resnet'),       # transformer student, CNN teacher
])
def test_branches_train_for_heterogeneous_pairs(student_name, teacher_name):
    cfg = make_config(dict(model=student_name, teacher=teacher_name, distill='ofa', teacher_pretrained=True,
                           ofa_stages=[-3, -2, -1], ofa_eps=[1.5], img_size=32))
    student = timm.create_model(student_name, num_classes=10, **({'img_size': 32} if 'vit' in student_name else {}))
    teacher = timm.create_model(teacher_name, num_classes=10, **({'img_size': 32} if 'vit' in teacher_name else {}))
    net = StudentNet.build(cfg, student, teacher.eval(), 10)
    assert len(net.branches.branches) == 3
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    logits, branch_logits = net(x)
    assert logits.shape == (4, 10) and [b.shape for b in branch_logits] == [(4, 10)] * 3
    losses = Objective(cfg, build_criterion(False, 0.1))(logits, branch_logits, y, teacher(x).detach())
    assert set(losses) == {'gt', 'kd', 'ofa'}
    sum(losses.values()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name


def test_branch_downsampling_follows_reductions():
    cfg = make_config(dict(model='ghostnet_050', teacher='test_vit', distill='ofa', teacher_pretrained=True,
                           ofa_stages=[1, -1]))
    student = timm.create_model('ghostnet_050', num_classes=10)
    teacher = timm.create_model('test_vit', num_classes=10)
    net = StudentNet.build(cfg, student, teacher, 10)
    info = student.feature_info
    first, last = net.branches.branches
    # stage 1 (reduction 4) needs log2(32 / 4) = 3 stride-2 blocks to reach the last stage's reduction
    assert info[1]['reduction'] == 4 and len(first.blocks) == 3
    assert len(last.blocks) == 1 and isinstance(last.blocks[0], torch.nn.Conv2d)
    assert first.fc.in_features == max(info[-1]['num_chs'], teacher.num_features)


def test_stage_indices():
    assert resolve_stage_indices([-2, -1, 0], 5) == [3, 4, 0]
    with pytest.raises(ValueError, match='out of range'):
        resolve_stage_indices([5], 5)
