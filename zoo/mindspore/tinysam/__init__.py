"""MindSpore twins of TinySAM (:mod:`zoo.models.tinysam`): the image encoder (``tinysam_vit_t``), the prompt
encoder, the mask decoder and the joined model, built from the torch model by :func:`from_torch_sam`
(Q-TinySAM: :func:`from_torch_qsam`); the predictor and everything-mode generator running them; and the export
of the encoder and the prompt-to-mask decoder as two MindIR graphs (:func:`export_sam_mindir`)."""
from .export import PromptDecoder, export_sam_mindir
from .image_encoder import TinySamImageEncoder
from .mask_decoder import MaskDecoder
from .mask_generator import MindSporeSamMaskGenerator
from .predictor import MindSporeSamPredictor
from .prompt_encoder import PromptEncoder
from .quant import from_torch_qsam
from .tiny_sam import TinySam, build_tinysam, from_torch_sam
from .transformer import TwoWayTransformer

__all__ = ['TinySamImageEncoder', 'PromptEncoder', 'MaskDecoder', 'TwoWayTransformer', 'TinySam', 'build_tinysam',
           'from_torch_sam', 'from_torch_qsam', 'MindSporeSamPredictor', 'MindSporeSamMaskGenerator',
           'PromptDecoder', 'export_sam_mindir']
