"""TinySAM: Segment Anything with a TinyViT-5M image encoder distilled from SAM (arXiv:2312.13789).

Laid out like segment-anything: :mod:`.modeling` (the image encoder, registered with timm as ``tinysam_vit_t``,
the prompt encoder, the mask decoder and its transformer, and :class:`TinySam` joining them), :mod:`.build_sam`
(:func:`create_sam` and the builders), :mod:`.predictor` (the interactive predictor), :mod:`.mask_generator` (the
grid and hierarchical "segment everything" generators) and :mod:`.utils` (amg helpers, transforms, key renames).
Q-TinySAM (W8A8) lives in :mod:`.quant`. The command line is ``python -m zoo.sam`` (:mod:`zoo.sam`).
"""
from .build_sam import build_tinysam, build_tinysam_w8a8, create_sam, load_sam_checkpoint
from .mask_generator import SamMaskGenerator, uncovered_grid_points
from .modeling import MaskDecoder, PromptEncoder, TinySam, TinySamImageEncoder, TwoWayTransformer
from .predictor import SamPredictor
from .quant import QuantLayer, default_quant_layers, load_quantized, quantize_modules, save_quantized
from .utils import ResizeLongestSide

__all__ = ['TinySamImageEncoder', 'PromptEncoder', 'MaskDecoder', 'TwoWayTransformer', 'TinySam',
           'build_tinysam', 'build_tinysam_w8a8', 'create_sam', 'load_sam_checkpoint', 'SamPredictor',
           'SamMaskGenerator', 'uncovered_grid_points', 'ResizeLongestSide', 'QuantLayer', 'default_quant_layers',
           'quantize_modules', 'save_quantized', 'load_quantized']
