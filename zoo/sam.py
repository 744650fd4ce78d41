"""``python -m zoo.sam``: TinySAM masks for a point prompt, or everything in an image (see
:mod:`zoo.models.tinysam.cli`)."""
from .models.tinysam.cli import main

if __name__ == '__main__':
    raise SystemExit(main())
