# The official Kinetics schedule of SqueezeTime: 100 epochs, lr 0.015 (for a total batch of 64) with a
# linear warm-up from 1/10 over 8 epochs, then cosine decay to 1/100 of it; validation every 2 epochs.
# The backbone starts from SqueezeTime's ImageNet-1k pretraining (released with the official code:
# https://github.com/xinghaochen/SqueezeTime/releases/download/ckpts/SqueezeTime_in1k_pretrain.pth);
# download it to the path below.
_base_ = './squeezetime_16x4x1_video.py'

model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='checkpoints/SqueezeTime_in1k_pretrain.pth')))

base_lr = 0.015
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_begin=1, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=8, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=92, eta_min=base_lr / 100, by_epoch=True, begin=8, end=100,
         convert_to_iter_based=True),
]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, weight_decay=7e-5),
    clip_grad=dict(max_norm=40, norm_type=2))
