"""TinySAM utilities: "segment everything" helpers (:mod:`.amg`), the longest-side resize (:mod:`.transforms`) and
the official -> zoo key renames (:mod:`.layout`)."""
from .layout import rename_encoder_key, to_zoo_layout, to_zoo_name
from .transforms import ResizeLongestSide

__all__ = ['ResizeLongestSide', 'rename_encoder_key', 'to_zoo_layout', 'to_zoo_name']
