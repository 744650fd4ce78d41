"""``python -m zoo.models.tinysam``: see :mod:`zoo.models.tinysam.cli`."""
import sys

from ...command_line import run_command
from .cli import main

sys.exit(run_command(main))
