# Wave-MLP-S (ImageNet 82.9) with Mask R-CNN, 1x schedule on COCO (Wave-MLP paper, CVPR 2022, COCO table).
_base_ = './_base_/mask-rcnn_fpn_1x_coco.py'

model = dict(
    backbone=dict(model_name='wavemlp_s'),
    neck=dict(in_channels=[64, 128, 320, 512]))
