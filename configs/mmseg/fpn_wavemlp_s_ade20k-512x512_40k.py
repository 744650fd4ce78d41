# Wave-MLP-S (ImageNet 82.9) + Semantic FPN on ADE20K (Wave-MLP paper, CVPR 2022).
_base_ = './_base_/fpn_ade20k-512x512_40k.py'

model = dict(
    backbone=dict(model_name='wavemlp_s'),
    neck=dict(in_channels=[64, 128, 320, 512]))
