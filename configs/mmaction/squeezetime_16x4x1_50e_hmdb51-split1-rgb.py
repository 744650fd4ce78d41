# SqueezeTime on HMDB51 split 1, fine-tuned from the Kinetics-400 model: 65.56 top-1 (official release
# SqueezeTime_HMDB51_65.56.pth). Official recipe: 50 epochs, SGD lr 0.02 (for a total batch of 64, the
# backbone's x0.1), weight decay 8e-3, lr / 10 after epochs 12 and 24; validation on 2 clips x 3 crops at
# 224, testing on 2 clips x 3 crops at 286.
_base_ = './_base_/squeezetime_16x4x1_video.py'

model = dict(
    backbone=dict(model_name='squeezetime_k400', pretrained=True),  # the released Kinetics-400 weights
    cls_head=dict(num_classes=51))

val_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len=16, frame_interval=4, num_clips=2, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 224)),
    dict(type='ThreeCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len=16, frame_interval=4, num_clips=2, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 286)),
    dict(type='ThreeCrop', crop_size=286),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]

data_root = 'data/hmdb51/videos'
train_dataloader = dict(dataset=dict(
    ann_file='data/hmdb51/hmdb51_train_split_1_videos.txt', data_prefix=dict(video=data_root)))
val_dataloader = dict(dataset=dict(
    ann_file='data/hmdb51/hmdb51_val_split_1_videos.txt', data_prefix=dict(video=data_root),
    pipeline=val_pipeline))
test_dataloader = dict(
    batch_size=16,
    dataset=dict(
        ann_file='data/hmdb51/hmdb51_val_split_1_videos.txt', data_prefix=dict(video=data_root),
        pipeline=test_pipeline))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=50, val_begin=1, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', begin=0, end=50, by_epoch=True, milestones=[12, 24], gamma=0.1)]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=8e-3),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}),
    clip_grad=dict(max_norm=40, norm_type=2))
