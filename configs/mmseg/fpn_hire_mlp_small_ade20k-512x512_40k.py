# Hire-MLP-Small (ImageNet 82.1) + Semantic FPN on ADE20K (Hire-MLP paper, CVPR 2022; official config).
_base_ = './_base_/fpn_ade20k-512x512_40k.py'

model = dict(
    backbone=dict(model_name='hire_mlp_small'),
    neck=dict(in_channels=[64, 128, 320, 512]))
