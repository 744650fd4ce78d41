# SqueezeTime on Kinetics-400: 71.64 top-1. The released model (SqueezeTime_K400_71.64.pth, official mmaction2
# layout) tests with this config; the zoo loads backbone weights when the model is built, so drop the ImageNet
# initialisation there: mim test mmaction THIS_CONFIG --checkpoint SqueezeTime_K400_71.64.pth
#     --cfg-options model.backbone.init_cfg=None
_base_ = './_base_/kinetics_100e.py'

model = dict(backbone=dict(model_name='squeezetime_k400'), cls_head=dict(num_classes=400))

data_root = 'data/kinetics400/videos_train'
data_root_val = 'data/kinetics400/videos_val'
train_dataloader = dict(dataset=dict(
    ann_file='data/kinetics400/kinetics400_train_list_videos.txt', data_prefix=dict(video=data_root)))
val_dataloader = dict(dataset=dict(
    ann_file='data/kinetics400/kinetics400_val_list_videos.txt', data_prefix=dict(video=data_root_val)))
test_dataloader = dict(dataset=dict(
    ann_file='data/kinetics400/kinetics400_val_list_videos.txt', data_prefix=dict(video=data_root_val)))
