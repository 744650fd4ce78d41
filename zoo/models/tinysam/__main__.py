"""``python -m zoo.models.tinysam``: see :mod:`zoo.models.tinysam.cli`."""
import sys

from .cli import main

sys.exit(main())
