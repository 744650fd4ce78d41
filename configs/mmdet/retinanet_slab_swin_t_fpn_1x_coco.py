# SLAB-Swin-T (ImageNet 81.8) with RetinaNet, 1x schedule on COCO. The SLAB paper reports Mask R-CNN only;
# this config keeps the zoo's RetinaNet protocol (single scale 1333x800, 12 epochs) with the optimizer of
# SLAB's Swin detection recipe: AdamW lr 1e-4, weight decay 0.05 (none on norms and relative position
# tables), drop path 0.1.
_base_ = './_base_/retinanet_fpn_1x_coco.py'

model = dict(
    backbone=dict(model_name='slab_swin_t', drop_path_rate=0.1),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    optimizer=dict(weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'relative_position_bias_table': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
    }))
