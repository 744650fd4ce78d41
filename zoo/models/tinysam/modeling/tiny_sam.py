"""The joined TinySAM model: image encoder + prompt encoder + mask decoder, as segment-anything's ``Sam``."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .image_encoder import TinySamImageEncoder
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

__all__ = ['TinySam', 'PIXEL_MEAN', 'PIXEL_STD']

#: SAM's pixel statistics for 0..255 RGB inputs
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class TinySam(nn.Module):
    """Segment Anything with TinySAM's encoder. Inputs are 0..255 RGB images, resized so the longest side
    is ``image_encoder.img_size`` (see :class:`ResizeLongestSide`); ``preprocess`` normalises and pads them.
    """
    mask_threshold: float = 0.0
    image_format: str = 'RGB'

    def __init__(self, image_encoder: TinySamImageEncoder, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 pixel_mean: Tuple[float, ...] = PIXEL_MEAN, pixel_std: Tuple[float, ...] = PIXEL_STD):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer('pixel_mean', torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer('pixel_std', torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise 0..255 RGB (…, 3, h, w) and pad bottom/right to img_size x img_size."""
        h, w = x.shape[-2:]
        if h > self.img_size or w > self.img_size:
            raise ValueError(f'image {h}x{w} is larger than the model input {self.img_size}; '
                             f'resize it first (ResizeLongestSide)')
        x = (x - self.pixel_mean) / self.pixel_std
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(self, masks: torch.Tensor, input_size: Tuple[int, int],
                          original_size: Tuple[int, int]) -> torch.Tensor:
        """Low-resolution logits -> logits at the original image size (padding removed)."""
        masks = F.interpolate(masks, (self.img_size, self.img_size), mode='bilinear', align_corners=False)
        masks = masks[..., :input_size[0], :input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode='bilinear', align_corners=False)

    def decode(self, image_embeddings: torch.Tensor, point_coords: Optional[torch.Tensor] = None,
               point_labels: Optional[torch.Tensor] = None, boxes: Optional[torch.Tensor] = None,
               mask_input: Optional[torch.Tensor] = None,
               multimask_output: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prompts in the input frame -> (low-res logits (B, M, 256, 256), IoU predictions (B, M))."""
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                 multimask_output=multimask_output)

    @torch.no_grad()
    def forward(self, batched_input: List[Dict[str, Any]], multimask_output: bool = True) -> List[Dict[str, torch.Tensor]]:
        """segment-anything's batched interface: a list of dicts with 'image' (3, h, w already resized),
        'original_size', and optional 'point_coords', 'point_labels', 'boxes', 'mask_inputs' in the input frame."""
        images = torch.stack([self.preprocess(rec['image']) for rec in batched_input])
        embeddings = self.image_encoder(images)
        outputs = []
        for rec, emb in zip(batched_input, embeddings):
            low_res, iou = self.decode(emb[None], rec.get('point_coords'), rec.get('point_labels'),
                                       rec.get('boxes'), rec.get('mask_inputs'), multimask_output)
            masks = self.postprocess_masks(low_res, rec['image'].shape[-2:], rec['original_size'])
            outputs.append({'masks': masks > self.mask_threshold, 'iou_predictions': iou, 'low_res_logits': low_res})
        return outputs
