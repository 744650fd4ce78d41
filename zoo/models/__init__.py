"""Importing this package registers every zoo model family with timm (one module per family)."""
from . import ghostnet
from . import tinysam
from . import squeezetime
from . import pyramid_tnt, tnt
from . import wavemlp, hiremlp
from . import vig
from . import cgrseg
from . import slab
