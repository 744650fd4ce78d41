"""TinySAM: Segment Anything with a TinyViT-5M image encoder distilled from SAM (arXiv:2312.13789).

Laid out like segment-anything's ``modeling/``: :mod:`.image_encoder` (registered with timm as
``tinysam_vit_t``), :mod:`.prompt_encoder`, :mod:`.mask_decoder`, :mod:`.transformer`, and :mod:`.sam`
(the thin model joining them, and :func:`create_sam`). :mod:`.predictor` holds the interactive predictor,
:mod:`.mask_generator` the grid and hierarchical "segment everything" generators.

Q-TinySAM (W8A8): :mod:`.quant_layers` (fake-quantized layers), :mod:`.quantize` (which layers, zoo's file),
:mod:`.convert_quantized` (the official pickled release, read without running it), :mod:`.calibration` and
:mod:`.calibrate` (post-training quantization of a float TinySAM on a folder of images).
"""
from .image_encoder import TinySamImageEncoder
from .mask_decoder import MaskDecoder
from .mask_generator import SamMaskGenerator, uncovered_grid_points
from .predictor import SamPredictor
from .prompt_encoder import PromptEncoder
from .quantize import QuantLayer, default_quant_layers, load_quantized, quantize_modules, save_quantized
from .sam import TinySam, build_tinysam, build_tinysam_w8a8, create_sam, load_sam_checkpoint
from .transformer import TwoWayTransformer
from .transforms import ResizeLongestSide

__all__ = ['TinySamImageEncoder', 'PromptEncoder', 'MaskDecoder', 'TwoWayTransformer', 'TinySam',
           'build_tinysam', 'build_tinysam_w8a8', 'create_sam', 'load_sam_checkpoint', 'SamPredictor',
           'SamMaskGenerator', 'uncovered_grid_points', 'ResizeLongestSide', 'QuantLayer', 'default_quant_layers',
           'quantize_modules', 'save_quantized', 'load_quantized']
