"""Segment everything: SAM's grid of point prompts, and TinySAM's hierarchical (sparse, then dense) variant.

The hierarchical strategy (TinySAM paper, Sec. 3.3) first decodes a sparse grid with a quarter of the points
per side. Masks that pass the usual filters and whose logits exceed ``high_score_thresh`` mark the image as
confidently covered; the second pass decodes only the points of the dense grid that fall on uncovered
pixels. Both passes' masks are then de-duplicated together (box NMS) and cleaned up (small regions).
In the official code the dense points are a lattice around each sparse point (offset by half a dense
cell); here they are SAM's standard dense grid, so an uncovered image gets exactly the full grid.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

import numpy as np
import torch
from torchvision.ops import batched_nms

from .modeling.tiny_sam import TinySam
from .predictor import SamPredictor
from .utils.amg import (MaskRecords, batch_iterator, build_point_grid, mask_to_rle, masks_to_boxes, remove_small_regions,
                        rle_area, rle_to_mask, stability_score)
from .utils.transforms import to_rgb_uint8

__all__ = ['SamMaskGenerator', 'uncovered_grid_points']


def uncovered_grid_points(coverage: np.ndarray, points_per_side: int) -> np.ndarray:
    """Points of the ``points_per_side`` grid (normalised (x, y), (M, 2)) that fall on False pixels of ``coverage``."""
    coverage = np.asarray(coverage, dtype=bool)
    h, w = coverage.shape
    grid = build_point_grid(points_per_side)
    cols = np.minimum((grid[:, 0] * w).astype(int), w - 1)
    rows = np.minimum((grid[:, 1] * h).astype(int), h - 1)
    return grid[~coverage[rows, cols]]


class SamMaskGenerator:
    """Masks for everything in an image, from a grid of single-point prompts.

    Args:
        model: a :class:`TinySam`.
        points_per_side: the dense grid is ``points_per_side`` x ``points_per_side`` points.
        points_per_batch: prompts decoded together.
        pred_iou_thresh: keep masks whose predicted IoU exceeds this.
        stability_score_thresh: keep masks whose stability score reaches this.
        stability_score_offset: logit offset of the stability score.
        box_nms_thresh: box IoU above which the lower-scoring duplicate is dropped.
        min_mask_region_area: fill holes and drop islands smaller than this (pixels; 0 disables).
        high_score_thresh: logit above which a first-pass mask counts as covering a pixel (hierarchical mode).
        output_mode: 'binary_mask' (HxW bool arrays) or 'uncompressed_rle'.
    """

    def __init__(
            self,
            model: TinySam,
            points_per_side: int = 32,
            points_per_batch: int = 64,
            pred_iou_thresh: float = 0.88,
            stability_score_thresh: float = 0.95,
            stability_score_offset: float = 1.0,
            box_nms_thresh: float = 0.7,
            min_mask_region_area: int = 0,
            high_score_thresh: float = 8.5,
            output_mode: str = 'binary_mask',
    ):
        if points_per_side < 4:
            raise ValueError(f'points_per_side must be at least 4 (the hierarchical first pass uses a quarter), '
                             f'got {points_per_side}')
        if output_mode not in ('binary_mask', 'uncompressed_rle'):
            raise ValueError(f"output_mode must be 'binary_mask' or 'uncompressed_rle', got {output_mode!r}")
        self.predictor = SamPredictor(model)
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.min_mask_region_area = min_mask_region_area
        self.high_score_thresh = high_score_thresh
        self.output_mode = output_mode
        #: what the last call did: prompts decoded per pass, seconds spent
        self.stats: Dict[str, Any] = {}

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> List[Dict[str, Any]]:
        """SAM's everything mode: decode the full dense grid."""
        start = time.perf_counter()
        image = to_rgb_uint8(image)
        self.predictor.set_image(image)
        grid = build_point_grid(self.points_per_side)
        records, _ = self._decode_points(grid, image.shape[:2], with_coverage=False)
        out = self._finish(records)
        self.stats = dict(mode='grid', prompts=len(grid), first_pass=len(grid), second_pass=0,
                          seconds=time.perf_counter() - start)
        return out

    @torch.no_grad()
    def hierarchical_generate(self, image: np.ndarray) -> List[Dict[str, Any]]:
        """TinySAM's hierarchical everything mode: sparse grid, then dense points only where still uncovered."""
        start = time.perf_counter()
        image = to_rgb_uint8(image)
        self.predictor.set_image(image)
        sparse = build_point_grid(self.points_per_side // 4)
        records, coverage = self._decode_points(sparse, image.shape[:2], with_coverage=True)
        dense = uncovered_grid_points(coverage.cpu().numpy(), self.points_per_side)
        if len(dense):
            more, _ = self._decode_points(dense, image.shape[:2], with_coverage=False)
            records.cat(more)
        out = self._finish(records)
        self.stats = dict(mode='hierarchical', prompts=len(sparse) + len(dense), first_pass=len(sparse),
                          second_pass=len(dense), seconds=time.perf_counter() - start)
        return out

    def _decode_points(self, points: np.ndarray, size: tuple[int, int], with_coverage: bool):
        """Decode normalised points one batch at a time, keeping the masks that pass the quality filters."""
        h, w = size
        records = MaskRecords()
        coverage = torch.zeros(h, w, dtype=torch.bool, device=self.predictor.device)
        transform = self.predictor.transform
        for batch in batch_iterator(self.points_per_batch, points * np.array([w, h])):
            coords = torch.as_tensor(transform.apply_coords(batch, size), dtype=torch.float,
                                     device=self.predictor.device)
            labels = torch.ones(len(batch), 1, dtype=torch.int, device=coords.device)
            logits, iou, _ = self.predictor.predict_torch(coords[:, None], labels, return_logits=True)
            n_masks = logits.shape[1]
            logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
            keep = iou > self.pred_iou_thresh
            logits, iou = logits[keep], iou[keep]
            pts = torch.as_tensor(np.repeat(batch, n_masks, axis=0))[keep.cpu()]
            stab = stability_score(logits, self.predictor.model.mask_threshold, self.stability_score_offset)
            keep = stab >= self.stability_score_thresh
            logits, iou, stab, pts = logits[keep], iou[keep], stab[keep], pts[keep.cpu()]
            if with_coverage and len(logits):
                coverage |= (logits > self.high_score_thresh).any(dim=0)
            masks = logits > self.predictor.model.mask_threshold
            records.cat(MaskRecords(rles=mask_to_rle(masks), boxes=masks_to_boxes(masks).cpu(), iou_preds=iou.cpu(),
                                    stability_score=stab.cpu(), points=pts))
        return records, coverage

    def _finish(self, records: MaskRecords) -> List[Dict[str, Any]]:
        """Box NMS over all masks, optional small-region clean-up, and one record per mask."""
        if not records.num_masks():
            return []
        keep = batched_nms(records['boxes'], records['iou_preds'], torch.zeros(len(records['boxes'])),
                           self.box_nms_thresh)
        records.filter(keep)
        if self.min_mask_region_area > 0:
            records = self._clean_small_regions(records)
        out = []
        for i, rle in enumerate(records['rles']):
            box = records['boxes'][i].tolist()
            out.append({
                'segmentation': rle_to_mask(rle) if self.output_mode == 'binary_mask' else rle,
                'area': rle_area(rle),
                'bbox': [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                'predicted_iou': float(records['iou_preds'][i]),
                'point_coords': [records['points'][i].tolist()],
                'stability_score': float(records['stability_score'][i]),
            })
        return out

    def _clean_small_regions(self, records: MaskRecords) -> MaskRecords:
        masks, scores = [], []
        for rle in records['rles']:
            mask, holes_changed = remove_small_regions(rle_to_mask(rle), self.min_mask_region_area, 'holes')
            mask, islands_changed = remove_small_regions(mask, self.min_mask_region_area, 'islands')
            masks.append(torch.as_tensor(mask))
            scores.append(0.0 if holes_changed or islands_changed else 1.0)  # NMS prefers untouched masks
        masks = torch.stack(masks)
        boxes = masks_to_boxes(masks)
        keep = batched_nms(boxes, torch.tensor(scores), torch.zeros(len(boxes)), self.box_nms_thresh)
        for i in keep.tolist():
            if scores[i] == 0.0:
                records['rles'][i] = mask_to_rle(masks[i:i + 1])[0]
                records['boxes'][i] = boxes[i]
        records.filter(keep)
        return records
