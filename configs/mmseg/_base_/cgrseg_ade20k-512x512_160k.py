# CGRSeg on ADE20K, 512x512 crops, 160k iterations: the official recipe (nizhenliang/CGRSeg,
# local_configs/cgrseg/) in mmseg 1.x form. AdamW (lr 1.2e-4, betas 0.9/0.999, weight decay 0.01, none on
# norms; the decode head's lr x10), linear warm-up over 1500 iterations from 1e-6 of the lr, then poly decay
# (power 1) to 0; 4 images per GPU on 8 GPUs; SyncBN in the head; the backbone's batch norms frozen (eval
# mode, as the official backbone's train() does); whole-image testing at 2048x512 (padded to a multiple of
# 32, which the backbone needs); mIoU every 4000 iterations.
# The backbone is the zoo's EfficientFormerV2 of the CGRSeg model (ZooBackbone with a cgrseg_* name; its
# attention biases are defined on the 512x512 grid and resized for other sizes). A model config sets the
# backbone's model_name and the head's in_channels, channels and RCM settings.
_base_ = [
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

custom_imports = dict(imports=['zoo.downstream.mmseg'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size,
    test_cfg=dict(size_divisor=32))

model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='ZooBackbone', out_indices=(0, 1, 2, 3), norm_eval=True),
    decode_head=dict(
        type='CGRSegHead',
        in_index=[1, 2, 3],
        dropout_ratio=0.1,
        num_classes=150,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# the head's batch norms become SyncBN in distributed training
sync_bn = 'torch'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.), 'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]

train_dataloader = dict(batch_size=4)
train_cfg = dict(val_interval=4000)
