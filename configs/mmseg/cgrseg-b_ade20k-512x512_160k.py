# CGRSeg-B (EfficientFormerV2-S2 backbone, 256-wide head) (CGRSeg, ECCV 2024).
# The backbone starts from random weights unless given a checkpoint: backbone.init_cfg=dict(type='Pretrained',
# checkpoint=PATH) loads a cgrseg_b checkpoint (official mmseg or zoo layout) through the zoo.
_base_ = './_base_/cgrseg_ade20k-512x512_160k.py'

model = dict(
    backbone=dict(model_name='cgrseg_b'),
    decode_head=dict(
        in_channels=[64, 144, 288], channels=256,
        band_kernel_size=11, neck_band_kernel_size=11, neck_depth=6))
