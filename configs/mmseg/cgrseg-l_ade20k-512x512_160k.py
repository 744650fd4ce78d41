# CGRSeg-L (EfficientFormerV2-L backbone, 256-wide head, band length 9) (CGRSeg, ECCV 2024).
# The backbone starts from random weights unless given a checkpoint: backbone.init_cfg=dict(type='Pretrained',
# checkpoint=PATH) loads a cgrseg_l checkpoint (official mmseg or zoo layout) through the zoo.
_base_ = './_base_/cgrseg_ade20k-512x512_160k.py'

model = dict(
    backbone=dict(model_name='cgrseg_l'),
    decode_head=dict(
        in_channels=[80, 192, 384], channels=256,
        band_kernel_size=9, neck_band_kernel_size=9, neck_depth=5))
