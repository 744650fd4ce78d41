"""MindSpore twin of SAM's mask decoder (:mod:`zoo.models.tinysam.modeling.mask_decoder`)."""
from __future__ import annotations

from typing import Optional, Tuple

from mindspore import Tensor, nn, ops

from ..layers import GELU, Linear
from ..layers.embedding import Embedding
from ..layers.layer_norm_2d import LayerNorm2d
from .transformer import TwoWayTransformer

__all__ = ['MaskDecoder', 'MLP']


class MLP(nn.Cell):
    """``num_layers`` linear layers with ReLU between them."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.CellList([Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.relu = nn.ReLU()

    def construct(self, x: Tensor) -> Tensor:
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < n - 1:
                x = self.relu(x)
        return x


def _conv_transpose_2x2(in_channels: int, out_channels: int) -> nn.Conv2dTranspose:
    """torch ``ConvTranspose2d(in, out, kernel_size=2, stride=2)`` (bias on, weight [in, out, 2, 2])."""
    return nn.Conv2dTranspose(in_channels, out_channels, 2, stride=2, pad_mode='valid', has_bias=True)


class MaskDecoder(nn.Cell):
    """Mask logits at 4x the embedding resolution and their predicted IoU; token 0 is SAM's single-mask output,
    tokens 1..3 the multimask outputs."""

    def __init__(self, transformer_dim: int = 256, transformer: Optional[nn.Cell] = None,
                 num_multimask_outputs: int = 3, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256):
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer if transformer is not None else TwoWayTransformer(embedding_dim=transformer_dim)
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = Embedding(1, transformer_dim)
        self.mask_tokens = Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.SequentialCell([
            _conv_transpose_2x2(transformer_dim, transformer_dim // 4),
            LayerNorm2d(transformer_dim // 4),
            GELU(),
            _conv_transpose_2x2(transformer_dim // 4, transformer_dim // 8),
            GELU(),
        ])
        self.output_hypernetworks_mlps = nn.CellList([
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)])
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def construct(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                  dense_prompt_embeddings: Tensor, multimask_output: bool = True) -> Tuple[Tensor, Tensor]:
        """Low-resolution mask logits (B, M, 4h, 4w) and IoU predictions (B, M); M = 3 or 1."""
        masks, iou_pred = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings)
        if multimask_output:
            return masks[:, 1:], iou_pred[:, 1:]
        return masks[:, :1], iou_pred[:, :1]

    def predict_masks(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                      dense_prompt_embeddings: Tensor) -> Tuple[Tensor, Tensor]:
        """Logits and IoU for all mask tokens. ``image_embeddings`` (1 or B, C, h, w) is shared by B prompts."""
        bs = sparse_prompt_embeddings.shape[0]
        output_tokens = ops.cat([self.iou_token.weight, self.mask_tokens.weight], 0)
        output_tokens = ops.broadcast_to(output_tokens.expand_dims(0), (bs,) + output_tokens.shape)
        tokens = ops.cat([output_tokens, sparse_prompt_embeddings], 1)
        b, c, h, w = dense_prompt_embeddings.shape
        src = ops.broadcast_to(image_embeddings, (bs, c, h, w)) + dense_prompt_embeddings
        pos_src = ops.broadcast_to(image_pe, (bs, c, h, w))
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0]
        upscaled = self.output_upscaling(src.swapaxes(1, 2).reshape(bs, c, h, w))
        hyper_in = ops.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        b, c, h, w = upscaled.shape
        masks = ops.matmul(hyper_in, upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out)
