# Pyramid ViG-S (ImageNet 82.1) with RetinaNet, 1x schedule on COCO (ViG paper, NeurIPS 2022, COCO table).
_base_ = './_base_/retinanet_fpn_1x_coco.py'

model = dict(
    # ViG normalises images with mean = std = 0.5
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(model_name='pvig_s_224_gelu'),
    neck=dict(in_channels=[80, 160, 400, 640]))
