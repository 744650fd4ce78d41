"""TinySAM as two MindIR graphs, the way SAM deployments split it: the image encoder (run once per image) and
the prompt-to-mask decoder (run per prompt against the stored embedding).

The decoder graph takes the image embedding (1, 256, h, w), point coordinates (B, N, 2) in the resized input
frame and their labels (B, N) (1 foreground, 0 background, -1 padding), and, when built ``with_box``, boxes
(B, 4); it returns the multimask low-resolution logits (B, 3, 4h, 4w) and IoU predictions (B, 3). With
``dynamic_points`` the graph takes any number of points N (a dynamic axis).
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from ..checkpoints import atomic_path
from .tiny_sam import TinySam

__all__ = ['PromptDecoder', 'export_sam_mindir']


class PromptDecoder(nn.Cell):
    """Prompt encoder + mask decoder of a :class:`TinySam` as one cell: (embedding, points, labels[, boxes]) ->
    (low-res mask logits, IoU predictions)."""

    def __init__(self, sam: TinySam, with_box: bool = False, multimask_output: bool = True):
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.with_box = with_box
        self.multimask_output = multimask_output

    def construct(self, image_embeddings: Tensor, point_coords: Tensor, point_labels: Tensor, boxes=None):
        sparse = self.prompt_encoder.embed_points(point_coords, point_labels, not self.with_box)
        if self.with_box:
            sparse = ms.ops.cat([sparse, self.prompt_encoder.embed_boxes(boxes)], 1)
        _, dense = self.prompt_encoder(None, None, None)
        dense = ms.ops.broadcast_to(dense, (sparse.shape[0],) + dense.shape[1:])
        return self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                 self.multimask_output)


def export_sam_mindir(sam: TinySam, folder: str | Path, with_box: bool = False,
                      dynamic_points: bool = True) -> Tuple[Path, Path]:
    """Write ``encoder.mindir`` and ``decoder.mindir`` of ``sam`` into ``folder`` (each written whole or not at
    all); returns their paths. The encoder graph takes preprocessed (1, 3, img_size, img_size) images."""
    folder = Path(folder)
    size, grid = sam.img_size, sam.prompt_encoder.image_embedding_size
    encoder_path, decoder_path = folder / 'encoder.mindir', folder / 'decoder.mindir'
    with atomic_path(encoder_path, suffix='.mindir') as tmp:
        ms.export(sam.image_encoder, Tensor(np.zeros((1, 3, size, size), np.float32)), file_name=str(tmp),
                  file_format='MINDIR')
    embed_dim = sam.prompt_encoder.embed_dim
    points = Tensor(shape=[1, None, 2], dtype=ms.float32) if dynamic_points else Tensor(np.zeros((1, 1, 2), np.float32))
    labels = Tensor(shape=[1, None], dtype=ms.int32) if dynamic_points else Tensor(np.ones((1, 1), np.int32))
    inputs = [Tensor(np.zeros((1, embed_dim) + tuple(grid), np.float32)), points, labels]
    if with_box:
        inputs.append(Tensor(np.zeros((1, 4), np.float32)))
    with atomic_path(decoder_path, suffix='.mindir') as tmp:
        ms.export(PromptDecoder(sam, with_box), *inputs, file_name=str(tmp), file_format='MINDIR')
    return encoder_path, decoder_path
