"""Interactive prediction: encode an image once with ``set_image``, then decode many prompts with ``predict``."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from .modeling.tiny_sam import TinySam
from .utils.transforms import ResizeLongestSide, to_rgb_uint8

__all__ = ['SamPredictor']


class SamPredictor:
    """segment-anything's ``SamPredictor`` for TinySAM.

    ``set_image(image)`` computes the image embedding once; ``predict`` then decodes any number of prompts
    against it (a single prompt, or a batch: points (B, N, 2) with labels (B, N), boxes (B, 4)).
    """

    def __init__(self, sam_model: TinySam):
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.img_size)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features: Optional[torch.Tensor] = None
        self.original_size: Optional[Tuple[int, int]] = None
        self.input_size: Optional[Tuple[int, int]] = None

    def set_image(self, image: np.ndarray, image_format: str = 'RGB') -> None:
        """Encode an HxWx3 uint8 image (grayscale / RGBA are converted, see :func:`to_rgb_uint8`)."""
        image = to_rgb_uint8(image, image_format)
        resized = self.transform.apply_image(image)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.set_torch_image(tensor, image.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Tuple[int, int]) -> None:
        """Encode a (1, 3, h, w) 0..255 image already resized with ``ResizeLongestSide``."""
        if transformed_image.ndim != 4 or transformed_image.shape[:2] != (1, 3) \
                or max(transformed_image.shape[2:]) != self.model.img_size:
            raise ValueError(f'set_torch_image expects (1, 3, h, w) with longest side {self.model.img_size}, '
                             f'got {tuple(transformed_image.shape)}')
        self.reset_image()
        self.original_size = tuple(int(s) for s in original_image_size)
        self.input_size = tuple(int(s) for s in transformed_image.shape[-2:])
        self.features = self.model.image_encoder(self.model.preprocess(transformed_image.float()))
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        self._require_image()
        return self.features

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError('call set_image(...) before predicting masks')

    def _check_inside(self, coords: np.ndarray, what: str) -> None:
        h, w = self.original_size
        xy = coords.reshape(-1, 2)
        outside = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)
        if outside.any():
            raise ValueError(f'{what} {xy[outside][0].tolist()} lies outside the image (width {w}, height {h}); '
                             f'coordinates are (x, y) pixels of the original image')

    def predict(
            self,
            point_coords: Optional[np.ndarray] = None,
            point_labels: Optional[np.ndarray] = None,
            box: Optional[np.ndarray] = None,
            mask_input: Optional[np.ndarray] = None,
            multimask_output: bool = True,
            return_logits: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts in original-image pixels.

        Args:
            point_coords: (N, 2) x, y points, or (B, N, 2) for a batch of B prompts.
            point_labels: (N,) or (B, N); 1 foreground, 0 background.
            box: (4,) x0, y0, x1, y1, or (B, 4).
            mask_input: (1, 256, 256) or (B, 1, 256, 256) low-resolution logits from a previous call.
            multimask_output: three masks per prompt (TinySAM's default) or SAM's single-mask token.
            return_logits: return logits instead of boolean masks.

        Returns:
            masks (C, H, W) (or (B, C, H, W) for batched prompts), IoU predictions (C,), low-res logits (C, 256, 256).
        """
        self._require_image()
        batched = False
        coords_t = labels_t = box_t = mask_t = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError('point_labels must be given with point_coords')
            point_coords = np.asarray(point_coords, dtype=float)
            point_labels = np.asarray(point_labels)
            if point_coords.size == 0:
                raise ValueError('point_coords is empty; pass None (and a box or mask) instead of an empty prompt')
            batched = point_coords.ndim == 3
            if point_coords.ndim == 2:
                point_coords, point_labels = point_coords[None], point_labels[None]
            if point_coords.ndim != 3 or point_coords.shape[-1] != 2 or point_labels.shape != point_coords.shape[:2]:
                raise ValueError(f'point_coords must be (N, 2) or (B, N, 2) with labels (N,) or (B, N), got '
                                 f'{point_coords.shape} and {point_labels.shape}')
            self._check_inside(point_coords, 'point')
            coords_t = torch.as_tensor(self.transform.apply_coords(point_coords, self.original_size),
                                       dtype=torch.float, device=self.device)
            labels_t = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)
        if box is not None:
            box = np.asarray(box, dtype=float)
            if box.size == 0:
                raise ValueError('box is empty; pass None instead')
            batched = batched or box.ndim == 2
            box = box.reshape(-1, 4)
            self._check_inside(box.reshape(-1, 2, 2), 'box corner')
            box_t = torch.as_tensor(self.transform.apply_boxes(box, self.original_size),
                                    dtype=torch.float, device=self.device)
        if mask_input is not None:
            mask_input = np.asarray(mask_input, dtype=np.float32)
            batched = batched or mask_input.ndim == 4
            mask_t = torch.as_tensor(mask_input.reshape(-1, 1, *mask_input.shape[-2:]), device=self.device)
        if coords_t is None and box_t is None and mask_t is None:
            raise ValueError('no prompt given: pass point_coords/point_labels, a box or a mask_input')
        masks, iou, low_res = self.predict_torch(coords_t, labels_t, box_t, mask_t, multimask_output, return_logits)
        masks, iou, low_res = masks.cpu().numpy(), iou.cpu().numpy(), low_res.cpu().numpy()
        return (masks, iou, low_res) if batched else (masks[0], iou[0], low_res[0])

    @torch.no_grad()
    def predict_torch(
            self,
            point_coords: Optional[torch.Tensor],
            point_labels: Optional[torch.Tensor],
            boxes: Optional[torch.Tensor] = None,
            mask_input: Optional[torch.Tensor] = None,
            multimask_output: bool = True,
            return_logits: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts already in the resized input frame -> (masks (B, C, H, W), IoU (B, C), low-res logits)."""
        self._require_image()
        low_res, iou = self.model.decode(self.features, point_coords, point_labels, boxes, mask_input,
                                         multimask_output)
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res
