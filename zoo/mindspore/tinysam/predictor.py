"""Interactive prediction with the MindSpore TinySAM: the torch :class:`~zoo.models.tinysam.SamPredictor`'s
interface, checks and error messages, with the network (encoder, prompt encoder, mask decoder, mask upscaling)
run by the MindSpore twin.

The prompt checks and coordinate mapping are NumPy and shared with the torch predictor (this class inherits
them); only the two methods that run the network are MindSpore's. Their inputs and outputs stay torch CPU
tensors so the inherited ``predict`` and the everything-mode generator work unchanged.
"""
from __future__ import annotations

from typing import Optional, Tuple

import mindspore as ms
import numpy as np
import torch

from ...models.tinysam.predictor import SamPredictor
from .tiny_sam import TinySam

__all__ = ['MindSporeSamPredictor']


def _ms(x: Optional[torch.Tensor], dtype=ms.float32) -> Optional[ms.Tensor]:
    return None if x is None else ms.Tensor(x.detach().cpu().numpy(), dtype=dtype)


class MindSporeSamPredictor(SamPredictor):
    """``set_image(image)`` encodes an HxWx3 uint8 image once; ``predict`` decodes prompts against it."""

    def __init__(self, sam_model: TinySam):
        if not isinstance(sam_model, TinySam):
            raise ValueError(f'MindSporeSamPredictor takes a MindSpore TinySam (zoo.mindspore.tinysam), got '
                             f'{type(sam_model).__name__}; use zoo.models.tinysam.SamPredictor for a torch model')
        super().__init__(sam_model)

    @property
    def device(self) -> torch.device:
        return torch.device('cpu')  # where the (torch) prompt tensors of the inherited code live

    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Tuple[int, int]) -> None:
        """Encode a (1, 3, h, w) 0..255 image already resized with ``ResizeLongestSide``."""
        if transformed_image.ndim != 4 or transformed_image.shape[:2] != (1, 3) \
                or max(transformed_image.shape[2:]) != self.model.img_size:
            raise ValueError(f'set_torch_image expects (1, 3, h, w) with longest side {self.model.img_size}, '
                             f'got {tuple(transformed_image.shape)}')
        self.reset_image()
        self.original_size = tuple(int(s) for s in original_image_size)
        self.input_size = tuple(int(s) for s in transformed_image.shape[-2:])
        image = ms.Tensor(transformed_image.float().numpy())
        self.features = self.model.image_encoder(self.model.preprocess(image))
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        self._require_image()
        return torch.from_numpy(self.features.asnumpy())

    def predict_torch(
            self,
            point_coords: Optional[torch.Tensor],
            point_labels: Optional[torch.Tensor],
            boxes: Optional[torch.Tensor] = None,
            mask_input: Optional[torch.Tensor] = None,
            multimask_output: bool = True,
            return_logits: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts in the resized input frame -> (masks (B, C, H, W), IoU (B, C), low-res logits)."""
        self._require_image()
        low_res, iou = self.model.decode(self.features, _ms(point_coords), _ms(point_labels, ms.int32),
                                         _ms(boxes), _ms(mask_input), multimask_output)
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size).asnumpy()
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return torch.from_numpy(np.ascontiguousarray(masks)), torch.from_numpy(iou.asnumpy()), \
            torch.from_numpy(low_res.asnumpy())
