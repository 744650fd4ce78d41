# CGRSeg-L (EfficientFormerV2-L backbone, 256-wide head, band length 9) (CGRSeg, ECCV 2024).
# As in the official training, start the backbone from ImageNet: backbone.init_cfg=dict(type='Pretrained',
# checkpoint='eformer_l_450.pth') (the EfficientFormerV2 release, or timm's efficientformerv2_l weights; the
# classifier is left out and the attention biases start at zero, as there). A cgrseg_l checkpoint (official
# mmseg or zoo layout) loads the same way. Without init_cfg the backbone starts from random weights.
_base_ = './_base_/cgrseg_ade20k-512x512_160k.py'

model = dict(
    backbone=dict(model_name='cgrseg_l'),
    decode_head=dict(
        in_channels=[80, 192, 384], channels=256,
        band_kernel_size=9, neck_band_kernel_size=9, neck_depth=5))
