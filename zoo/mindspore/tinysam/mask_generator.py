"""Everything mode (SAM's full grid and TinySAM's hierarchical grid) with the MindSpore TinySAM.

The network runs in MindSpore (through :class:`MindSporeSamPredictor`); the prompt grid, the quality filters,
box NMS and run-length encoding are the torch generator's own bookkeeping, inherited unchanged, so the two
frameworks keep or drop masks by the same rules.
"""
from __future__ import annotations

from typing import Any

from ...models.tinysam.mask_generator import SamMaskGenerator
from .predictor import MindSporeSamPredictor
from .tiny_sam import TinySam

__all__ = ['MindSporeSamMaskGenerator']


class MindSporeSamMaskGenerator(SamMaskGenerator):
    """:class:`zoo.models.tinysam.SamMaskGenerator` (same arguments) for a MindSpore :class:`TinySam`."""

    def __init__(self, model: TinySam, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.predictor = MindSporeSamPredictor(model)
