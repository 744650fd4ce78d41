"""The error style every ``python -m zoo.*`` command shares: a user error is one line on stderr and exit status 2.

The zoo's own errors for bad input (unreadable checkpoints and images, unknown models, Hub folders, options out
of range) are ``ValueError`` subclasses whose message names the file or flag, the problem and the fix; torch's
``RuntimeError`` for a checkpoint that does not fit a model is a user error too. Anything else is a bug in the
zoo and keeps its traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

__all__ = ['USER_ERRORS', 'run_command']

#: Exceptions reported as one line (exit status 2) rather than a traceback.
USER_ERRORS = (ValueError, RuntimeError)


def run_command(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Call ``main(argv)``; a :data:`USER_ERRORS` exception prints ``error: <message>`` (on one line, at most
    500 characters) and returns 2. argparse's own errors already exit with status 2."""
    try:
        return main(argv)
    except USER_ERRORS as e:
        message = ' '.join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
        print(f'error: {message[:500]}', file=sys.stderr)
        return 2
