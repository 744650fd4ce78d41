"""``python -m zoo.mindspore``: see :mod:`zoo.mindspore.command_line`."""
import sys

from .command_line import main

sys.exit(main())
