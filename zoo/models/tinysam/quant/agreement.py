"""How closely a quantized TinySAM reproduces the float one: mask IoU and IoU-prediction gap on point prompts."""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from ..modeling.tiny_sam import TinySam
from ..predictor import SamPredictor
from ..utils.amg import build_point_grid

__all__ = ['mask_agreement']


@torch.no_grad()
def mask_agreement(reference: TinySam, other: TinySam, image: np.ndarray, points_per_side: int = 4) -> Dict[str, float]:
    """How closely ``other`` reproduces ``reference`` on a grid of single-point prompts over ``image``.

    Returns the mean and minimum IoU between their masks (all three masks of every prompt, at the image's
    size), how often they pick the same best mask, and the largest difference of their IoU predictions.
    """
    points = build_point_grid(points_per_side) * np.array(image.shape[1::-1])
    outputs = []
    for model in (reference, other):
        predictor = SamPredictor(model)
        predictor.set_image(image)
        masks, iou, _ = predictor.predict(points[:, None], np.ones((len(points), 1), dtype=int))
        outputs.append((torch.as_tensor(masks), torch.as_tensor(iou)))
    (masks_a, iou_a), (masks_b, iou_b) = outputs
    inter = (masks_a & masks_b).flatten(2).sum(-1).float()
    union = (masks_a | masks_b).flatten(2).sum(-1).float()
    mask_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return {'mask_iou_mean': mask_iou.mean().item(), 'mask_iou_min': mask_iou.min().item(),
            'same_best_mask': (iou_a.argmax(1) == iou_b.argmax(1)).float().mean().item(),
            'iou_pred_max_abs_diff': (iou_a - iou_b).abs().max().item(), 'prompts': len(points)}
