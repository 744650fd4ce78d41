"""``python -m zoo.sam``: TinySAM masks for a point prompt, or everything in an image (see
:mod:`zoo.models.tinysam.cli`); ``python -m zoo.sam calibrate ...`` quantizes a float TinySAM into Q-TinySAM
(:mod:`zoo.models.tinysam.calibrate`), ``python -m zoo.sam convert-w8a8 SRC DST`` converts the official W8A8
release into zoo's file (:mod:`zoo.models.tinysam.convert_quantized`)."""
import sys
from typing import List, Optional

from .command_line import run_command
from .models.tinysam import calibrate, cli, convert_quantized

COMMANDS = {'calibrate': calibrate.main, 'convert-w8a8': convert_quantized.main}


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return cli.main(argv)


if __name__ == '__main__':
    raise SystemExit(run_command(main))
