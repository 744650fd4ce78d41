# SqueezeTime on Kinetics-600: 76.06 top-1 (the released SqueezeTime_K600_76.06.pth tests with this config,
# with --cfg-options model.backbone.init_cfg=None as for Kinetics-400).
# As Kinetics-400, with weight decay 3e-5.
_base_ = './_base_/kinetics_100e.py'

model = dict(backbone=dict(model_name='squeezetime_k600'), cls_head=dict(num_classes=600))
optim_wrapper = dict(optimizer=dict(weight_decay=3e-5))

data_root = 'data/kinetics600/videos_train'
data_root_val = 'data/kinetics600/videos_val'
train_dataloader = dict(dataset=dict(
    ann_file='data/kinetics600/kinetics600_train_list_videos.txt', data_prefix=dict(video=data_root)))
val_dataloader = dict(dataset=dict(
    ann_file='data/kinetics600/kinetics600_val_list_videos.txt', data_prefix=dict(video=data_root_val)))
test_dataloader = dict(dataset=dict(
    ann_file='data/kinetics600/kinetics600_val_list_videos.txt', data_prefix=dict(video=data_root_val)))
