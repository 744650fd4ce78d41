"""Q-TinySAM (W8A8, fake-quantized): the quantized layers (:mod:`.layers`), which layers and zoo's file
(:mod:`.quantize`), the official pickled release read without running it (:mod:`.convert`), post-training
calibration (:mod:`.calibration`) and the quantized-vs-float check (:mod:`.agreement`)."""
from .agreement import mask_agreement
from .calibration import SearchConfig, calibrate_sam
from .convert import ConvertedCheckpoint, convert_w8a8_checkpoint
from .quantize import QuantLayer, default_quant_layers, load_quantized, quantize_modules, save_quantized

__all__ = ['QuantLayer', 'default_quant_layers', 'quantize_modules', 'save_quantized', 'load_quantized',
           'convert_w8a8_checkpoint', 'ConvertedCheckpoint', 'SearchConfig', 'calibrate_sam', 'mask_agreement']
