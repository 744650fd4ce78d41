"""Importing this package registers every zoo model family with timm (one module per family)."""
from . import ghostnet
from . import squeezetime
from . import tinysam
from . import cgrseg
from . import pyramid_tnt, tnt
from . import wavemlp, hiremlp
from . import slab
