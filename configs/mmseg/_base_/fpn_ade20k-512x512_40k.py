# Semantic FPN on ADE20K, 512x512 crops, 40k iterations, with a zoo backbone: the official Hire-MLP recipe
# (ggjy/Hire-Wave-MLP.pytorch, mmseg-v0.11/configs/sem_fpn/), the one segmentation recipe of the repository
# that holds both Hire-MLP and Wave-MLP. AdamW (lr 2e-4, weight decay 0.05), poly decay (power 0.9) to 0,
# 4 images per GPU, SyncBN, backbone drop path 0.1, mIoU every 4000 iterations. Test images are padded to a
# multiple of 32 (ZooBackbone's size divisor for stride-32 stages) and the prediction cropped back.
# A model config sets the backbone's model_name and the neck's in_channels (= the backbone's stage channels).
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['zoo.downstream.mmseg'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(test_cfg=dict(size_divisor=32)),
    pretrained=None,
    backbone=dict(
        _delete_=True, type='ZooBackbone', out_indices=(0, 1, 2, 3), drop_path_rate=0.1, pretrained=True),
    decode_head=dict(num_classes=150))

# the backbone's and head's batch norms become SyncBN in distributed training
sync_bn = 'torch'

optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05))
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=0, end=40000)]
train_cfg = dict(max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
