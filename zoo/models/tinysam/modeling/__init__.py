"""TinySAM's modules, laid out like segment-anything's ``modeling/``: the image encoder (registered with timm as
``tinysam_vit_t``), the prompt encoder, the mask decoder with its two-way transformer, and the model joining them."""
from .image_encoder import TinySamImageEncoder
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .tiny_sam import TinySam
from .transformer import TwoWayTransformer

__all__ = ['TinySamImageEncoder', 'PromptEncoder', 'MaskDecoder', 'TwoWayTransformer', 'TinySam']
