"""MindSpore twin of SAM's prompt encoder (:mod:`zoo.models.tinysam.modeling.prompt_encoder`).

Points (B, N, 2) in input-frame pixels with labels (B, N) (1 foreground, 0 background, -1 padding), boxes (B, 4)
and low-resolution mask logits (B, 1, 4h, 4w) become sparse (B, N', C) and dense (B, C, h, w) embeddings.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..layers import GELU, Conv2d
from ..layers.embedding import Embedding
from ..layers.layer_norm_2d import LayerNorm2d

__all__ = ['PromptEncoder', 'PositionEmbeddingRandom']


class PositionEmbeddingRandom(nn.Cell):
    """Fourier features of (x, y) in [0, 1] with a fixed Gaussian frequency matrix (torch's buffer, kept here as
    a non-trainable parameter of the same name)."""

    def __init__(self, num_pos_feats: int = 64):
        super().__init__()
        self.positional_encoding_gaussian_matrix = Parameter(
            Tensor(np.random.default_rng(0).standard_normal((2, num_pos_feats)).astype(np.float32)),
            name='positional_encoding_gaussian_matrix', requires_grad=False)

    def _encode(self, coords: Tensor) -> Tensor:
        coords = ops.matmul(2 * coords - 1, self.positional_encoding_gaussian_matrix) * (2 * math.pi)
        return ops.cat([ops.sin(coords), ops.cos(coords)], -1)

    def construct(self, size: Tuple[int, int]) -> Tensor:
        """Encoding of the pixel centres of an (h, w) grid: (C, h, w)."""
        h, w = size
        ys = (np.arange(h, dtype=np.float32) + 0.5) / h
        xs = (np.arange(w, dtype=np.float32) + 0.5) / w
        grid = np.stack([np.broadcast_to(xs[None, :], (h, w)), np.broadcast_to(ys[:, None], (h, w))], -1)
        return self._encode(Tensor(grid)).transpose(2, 0, 1)

    def forward_with_coords(self, coords: Tensor, image_size: Tuple[int, int]) -> Tensor:
        """Encoding of (..., 2) pixel coordinates (x, y) in an image of ``image_size`` = (h, w)."""
        scale = Tensor(np.array([image_size[1], image_size[0]], np.float32))
        return self._encode(coords.astype(scale.dtype) / scale)


class PromptEncoder(nn.Cell):
    """Encodes point, box and mask prompts for the mask decoder."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: Tuple[int, int] = (64, 64),
                 input_image_size: Tuple[int, int] = (1024, 1024), mask_in_chans: int = 16):
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.CellList([Embedding(1, embed_dim) for _ in range(4)])
        self.not_a_point_embed = Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.SequentialCell([
            Conv2d(1, mask_in_chans // 4, 2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            GELU(),
            Conv2d(mask_in_chans // 4, mask_in_chans, 2, stride=2),
            LayerNorm2d(mask_in_chans),
            GELU(),
            Conv2d(mask_in_chans, embed_dim, 1),
        ])
        self.no_mask_embed = Embedding(1, embed_dim)

    def get_dense_pe(self) -> Tensor:
        """Positional encoding of the image-embedding grid: (1, C, h, w)."""
        return self.pe_layer(self.image_embedding_size).expand_dims(0)

    def embed_points(self, points: Tensor, labels: Tensor, pad: bool) -> Tensor:
        """(B, N, 2) points with (B, N) labels -> (B, N (+1 padding point when ``pad``), C)."""
        points = points + 0.5  # pixel centres
        labels = labels.astype(points.dtype)
        if pad:  # without a box, a padding point stands in for the missing corners
            points = ops.cat([points, ops.zeros((points.shape[0], 1, 2), points.dtype)], 1)
            labels = ops.cat([labels, -ops.ones((labels.shape[0], 1), labels.dtype)], 1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels.expand_dims(-1)
        emb = ops.where(labels == -1, self.not_a_point_embed.weight, emb)
        return (emb + (labels == 0).astype(emb.dtype) * self.point_embeddings[0].weight
                + (labels == 1).astype(emb.dtype) * self.point_embeddings[1].weight)

    def embed_boxes(self, boxes: Tensor) -> Tensor:
        """(B, 4) boxes x0, y0, x1, y1 -> (B, 2, C) corner embeddings."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        return emb + ops.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], 0)

    def construct(self, points: Optional[Tuple[Tensor, Tensor]], boxes: Optional[Tensor],
                  masks: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Sparse embeddings (B, N, C) for points and box corners, dense embeddings (B, C, h, w)."""
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        sparse = [ops.zeros((bs, 0, self.embed_dim), self.no_mask_embed.weight.dtype)]
        if points is not None:
            sparse.append(self.embed_points(points[0], points[1], boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        sparse = ops.cat(sparse, 1) if len(sparse) > 1 else sparse[0]
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = ops.broadcast_to(self.no_mask_embed.weight.reshape(1, -1, 1, 1), (bs, self.embed_dim, h, w))
        return sparse, dense
