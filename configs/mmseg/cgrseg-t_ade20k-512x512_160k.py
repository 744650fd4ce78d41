# CGRSeg-T (EfficientFormerV2-S1 backbone, 128-wide head): ADE20K 43.6 mIoU at 4.0 GFLOPs (CGRSeg, ECCV 2024).
# As in the official training, start the backbone from ImageNet: backbone.init_cfg=dict(type='Pretrained',
# checkpoint='eformer_s1_450.pth') (the EfficientFormerV2 release, or timm's efficientformerv2_s1 weights; the
# classifier is left out and the attention biases start at zero, as there). A cgrseg_t checkpoint (official
# mmseg or zoo layout) loads the same way. Without init_cfg the backbone starts from random weights.
_base_ = './_base_/cgrseg_ade20k-512x512_160k.py'

model = dict(
    backbone=dict(model_name='cgrseg_t'),
    decode_head=dict(
        in_channels=[48, 120, 224], channels=128,
        band_kernel_size=11, neck_band_kernel_size=11, neck_depth=5))
