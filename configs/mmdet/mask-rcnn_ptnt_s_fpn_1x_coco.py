# PyramidTNT-S (ImageNet 82.0) with Mask R-CNN, 1x schedule on COCO (PyramidTNT paper, COCO table).
# PyramidTNT's four stages have strides 8, 16, 32 and 64 (not 4..32): the RPN anchors and RoI extractors
# follow the FPN levels (8..128), and anchor scale 4 keeps the anchor sizes of the usual pyramid (32..512).
# The ImageNet weights are published on BaiduDisk only (see tnt_pytorch/readme.md of
# huawei-noah/Efficient-AI-Backbones): download PyramidTNT-S to the path below (any name; the official
# file loads as it is).
_base_ = './_base_/mask-rcnn_fpn_1x_coco.py'

strides = [8, 16, 32, 64]

model = dict(
    # PyramidTNT normalises images with mean = std = 0.5; its stride-64 stage needs inputs padded to 64
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], pad_size_divisor=64),
    backbone=dict(
        model_name='ptnt_s_patch16_256', pretrained=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ptnt_s_patch16_256.pth.tar')),
    neck=dict(in_channels=[128, 256, 512, 512]),
    rpn_head=dict(anchor_generator=dict(scales=[4], strides=strides + [128])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=strides),
        mask_roi_extractor=dict(featmap_strides=strides)))
