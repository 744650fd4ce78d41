# RetinaNet + FPN, 1x schedule on COCO 2017, with a zoo backbone (ZooBackbone, zoo.downstream.mmdet).
# The protocol of PVT, which the ViG, Wave-MLP, Hire-MLP and PyramidTNT papers follow for their COCO
# tables: AdamW, lr 1e-4, weight decay 1e-4, 16 images per batch (8 GPUs x 2), 12 epochs with the lr
# divided by 10 after epochs 8 and 11, single-scale training at 1333x800 with random flips.
# A model config sets backbone.model_name, the neck's in_channels (= the backbone's stage channels) and,
# where the model was trained with other normalisation statistics, data_preprocessor.mean/std.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['zoo.downstream.mmdet'], allow_failed_imports=False)

model = dict(
    backbone=dict(_delete_=True, type='ZooBackbone', out_indices=(0, 1, 2, 3), pretrained=True))

optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4))
