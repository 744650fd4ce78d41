"""MindSpore twins of the zoo's models, for Ascend: same weights, same answers (``pip install -e ".[mindspore]"``).

``import zoo`` never imports this package; importing it without MindSpore installed is one ImportError naming
the extra to install.
"""
import sys as _sys

_MISSING = 'zoo.mindspore needs MindSpore: pip install -e ".[mindspore]" (MindSpore 2.10, NumPy 1.x)'
try:
    import mindspore as _mindspore  # noqa: F401
except ImportError as _error:  # pragma: no cover - depends on the environment
    if _sys.argv[:1] == ['-m']:
        # `python -m zoo.mindspore ...`: runpy imports this package before __main__ (argv[0] is '-m' meanwhile),
        # so the command line's one-line error (exit status 2) has to come from here
        print(f'error: {_MISSING}', file=_sys.stderr)
        raise SystemExit(2) from None
    raise ImportError(_MISSING) from _error

from .api import (  # noqa: E402  (after the check above)
    convert_state_dict, create_model, from_torch, list_models, load_torch_weights, to_torch_state_dict,
)

__all__ = ['create_model', 'from_torch', 'convert_state_dict', 'to_torch_state_dict', 'load_torch_weights',
           'list_models']
