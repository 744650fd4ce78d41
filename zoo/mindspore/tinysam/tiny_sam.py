"""MindSpore twin of the joined TinySAM model (:class:`zoo.models.tinysam.TinySam`), and its builder from the
torch object ``zoo.create_sam('tinysam')`` returns."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
from mindspore import Tensor, nn, ops

from ...models.tinysam.modeling.tiny_sam import PIXEL_MEAN, PIXEL_STD  # one source for the normalisation
from .image_encoder import TinySamImageEncoder
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

__all__ = ['TinySam', 'build_tinysam', 'from_torch_sam']



class TinySam(nn.Cell):
    """Image encoder + prompt encoder + mask decoder; inputs are 0..255 RGB images resized so the longest side is
    ``img_size`` (``preprocess`` normalises and pads them)."""
    mask_threshold: float = 0.0

    def __init__(self, image_encoder: TinySamImageEncoder, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.pixel_mean = Tensor(np.array(PIXEL_MEAN, np.float32).reshape(-1, 1, 1))
        self.pixel_std = Tensor(np.array(PIXEL_STD, np.float32).reshape(-1, 1, 1))

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    def preprocess(self, x: Tensor) -> Tensor:
        """Normalise 0..255 RGB (B, 3, h, w) and pad bottom/right to img_size x img_size."""
        h, w = x.shape[-2], x.shape[-1]
        if h > self.img_size or w > self.img_size:
            raise ValueError(f'image {h}x{w} is larger than the model input {self.img_size}; '
                             f'resize it first (ResizeLongestSide)')
        x = (x - self.pixel_mean) / self.pixel_std
        return ops.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(self, masks: Tensor, input_size: Tuple[int, int], original_size: Tuple[int, int]) -> Tensor:
        """Low-resolution logits -> logits at the original image size (padding removed), bilinear as torch."""
        masks = ops.interpolate(masks, size=(self.img_size, self.img_size), mode='bilinear', align_corners=False)
        masks = masks[..., :input_size[0], :input_size[1]]
        return ops.interpolate(masks, size=tuple(original_size), mode='bilinear', align_corners=False)

    def decode(self, image_embeddings: Tensor, point_coords: Optional[Tensor] = None,
               point_labels: Optional[Tensor] = None, boxes: Optional[Tensor] = None,
               mask_input: Optional[Tensor] = None, multimask_output: bool = True) -> Tuple[Tensor, Tensor]:
        """Prompts in the input frame -> (low-res logits (B, M, 4h, 4w), IoU predictions (B, M))."""
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.prompt_encoder(points, boxes, mask_input)
        return self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                 multimask_output)

    def construct(self, images: Tensor) -> Tensor:
        """Image embeddings of preprocessed (B, 3, img_size, img_size) images."""
        return self.image_encoder(images)


def build_tinysam(img_size: int = 1024, prompt_embed_dim: int = 256, num_classes: int = 1000) -> TinySam:
    """TinySAM's architecture as MindSpore cells (random weights, inference mode)."""
    grid = img_size // 16
    sam = TinySam(
        TinySamImageEncoder(img_size=img_size, out_chans=prompt_embed_dim, num_classes=num_classes),
        PromptEncoder(prompt_embed_dim, (grid, grid), (img_size, img_size), mask_in_chans=16),
        MaskDecoder(prompt_embed_dim, TwoWayTransformer(2, prompt_embed_dim, 8, 2048), num_multimask_outputs=3,
                    iou_head_depth=3, iou_head_hidden_dim=256))
    sam.set_train(False)
    return sam


def from_torch_sam(sam: Any) -> TinySam:
    """The MindSpore twin of a torch ``TinySam`` (what ``zoo.create_sam('tinysam')`` returns), with its weights."""
    from ..api import load_torch_weights
    if any(k.endswith('.weight_scale') for k in sam.state_dict()):
        raise ValueError('this is a Q-TinySAM (W8A8) model: convert it with zoo.mindspore.tinysam.from_torch_qsam')
    encoder = sam.image_encoder
    twin = build_tinysam(encoder.img_size, encoder.out_chans, encoder.num_classes)
    load_torch_weights(twin, sam.state_dict())
    return twin
