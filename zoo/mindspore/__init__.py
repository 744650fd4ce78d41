"""MindSpore twins of the zoo's models, for Ascend: same weights, same answers (``pip install -e ".[mindspore]"``).

``import zoo`` never imports this package; importing it without MindSpore installed is one ImportError naming
the extra to install.
"""
try:
    import mindspore as _mindspore  # noqa: F401
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError('zoo.mindspore needs MindSpore: pip install -e ".[mindspore]" (MindSpore 2.10, NumPy 1.x)'
                      ) from _error

from .api import (  # noqa: E402  (after the check above)
    convert_state_dict, create_model, from_torch, list_models, load_torch_weights, to_torch_state_dict,
)

__all__ = ['create_model', 'from_torch', 'convert_state_dict', 'to_torch_state_dict', 'load_torch_weights',
           'list_models']
