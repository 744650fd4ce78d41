"""The parity check of a whole TinySAM (``python -m zoo.mindspore parity --model tinysam``): the image
embedding, then the masks and IoU predictions for a point prompt and a box prompt decoded from it, torch against
the MindSpore twin built from the same weights."""
from __future__ import annotations

from typing import Any

import mindspore as ms
import numpy as np
import torch

from ..parity import ParityReport, compare, difference

__all__ = ['compare_sam']


def compare_sam(sam: torch.nn.Module, twin: Any, image: np.ndarray) -> ParityReport:
    """``image``: a preprocessed (1, 3, S, S) batch. The report's differences: the embedding (and the encoder's
    stages), then masks and IoU predictions for a two-point prompt and for a box, in the input frame."""
    report = compare(sam.image_encoder, twin.image_encoder, image, task='sam')
    with torch.no_grad():
        embedding = sam.image_encoder(torch.from_numpy(image))
    size = image.shape[-1]
    prompts = {
        'points': dict(point_coords=np.array([[[0.2 * size, 0.3 * size], [0.7 * size, 0.6 * size]]], np.float32),
                       point_labels=np.array([[1, 0]], np.int32)),
        'box': dict(boxes=np.array([[0.1 * size, 0.2 * size, 0.8 * size, 0.9 * size]], np.float32)),
    }
    for prompt, kwargs in prompts.items():
        with torch.no_grad():
            masks, iou = sam.decode(embedding, **{k: torch.from_numpy(v) for k, v in kwargs.items()})
        got_masks, got_iou = twin.decode(ms.Tensor(embedding.numpy()), **{k: ms.Tensor(v) for k, v in kwargs.items()})
        report.differences.append(difference(f'{prompt} masks', masks.numpy(), got_masks.asnumpy()))
        report.differences.append(difference(f'{prompt} IoU', iou.numpy(), got_iou.asnumpy(), unit=1.0))
    return report
