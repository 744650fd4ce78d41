# SLAB-Swin-T (ImageNet 81.8) with Mask R-CNN, 1x schedule on COCO, as in the SLAB paper (ICML 2024) and
# its official config (xinghaochen/SLAB, detection/configs/swin/): the Swin recipe of multi-scale training
# (shorter side 480-800, or resize-crop-resize), AdamW lr 1e-4 with weight decay 0.05 (none on norms and
# relative position tables), drop path 0.1, mixed precision, 16 images per batch, 12 epochs (lr / 10 after
# epochs 8 and 11).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'

custom_imports = dict(imports=['zoo.downstream.mmdet'], allow_failed_imports=False)

max_epochs = 12

model = dict(
    backbone=dict(
        _delete_=True, type='ZooBackbone', model_name='slab_swin_t', out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1, pretrained=True),
    neck=dict(in_channels=[96, 192, 384, 768]))

train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
