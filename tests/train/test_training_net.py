"""Every paradigm's network passes the student's own weight-decay exclusions to timm's optimizer factory."""
import pytest
import timm
from timm.optim import create_optimizer_v2

import zoo  # noqa: F401
from zoo.train.distill import StudentNet
from zoo.train.mim import MaskedImageModel
from zoo.train.text_align import TextAlignedNet

NETS = {
    'supervised': lambda student: StudentNet(student),
    'fastmim': lambda student: MaskedImageModel(student, img_size=32, mask_patch=16),
    'gpt4image': lambda student: TextAlignedNet(student, text_dim=16, img_size=32),
}


@pytest.mark.parametrize('paradigm', sorted(NETS))
def test_student_exclusions_reach_the_optimizer(paradigm):
    student = timm.create_model('test_vit', img_size=32, num_classes=10)
    net = NETS[paradigm](student)
    optimizer = create_optimizer_v2(net, opt='adamw', lr=1e-3, weight_decay=0.05)
    no_decay = {id(p) for g in optimizer.param_groups if g['weight_decay'] == 0 for p in g['params']}
    decayed = {id(p) for g in optimizer.param_groups if g['weight_decay'] > 0 for p in g['params']}
    assert id(student.pos_embed) in no_decay and id(student.cls_token) in no_decay
    assert id(student.blocks[0].attn.qkv.weight) in decayed
    if paradigm == 'fastmim':
        assert id(net.decoder.mask_token) in no_decay and id(net.decoder.embed.weight) in decayed
    assert len(no_decay) + len(decayed) == sum(1 for p in net.parameters() if p.requires_grad)
