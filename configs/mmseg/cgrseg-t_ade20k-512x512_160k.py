# CGRSeg-T (EfficientFormerV2-S1 backbone, 128-wide head): ADE20K 43.6 mIoU at 4.0 GFLOPs (CGRSeg, ECCV 2024).
# The backbone starts from random weights unless given a checkpoint: backbone.init_cfg=dict(type='Pretrained',
# checkpoint=PATH) loads a cgrseg_t checkpoint (official mmseg or zoo layout) through the zoo.
_base_ = './_base_/cgrseg_ade20k-512x512_160k.py'

model = dict(
    backbone=dict(model_name='cgrseg_t'),
    decode_head=dict(
        in_channels=[48, 120, 224], channels=128,
        band_kernel_size=11, neck_band_kernel_size=11, neck_depth=5))
