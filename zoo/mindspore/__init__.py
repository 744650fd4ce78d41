"""MindSpore twins of the zoo's models, for Ascend: same weights, same answers (``pip install -e ".[mindspore]"``).

``import zoo`` never imports this package; importing it without MindSpore installed is one ImportError naming
the extra to install.
"""
try:
    import mindspore as _mindspore  # noqa: F401
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError('zoo.mindspore needs MindSpore: pip install -e ".[mindspore]" (MindSpore 2.10, NumPy 1.x)'
                      ) from _error
