"""MindSpore twins of every SLAB variant (DeiT, PVT / PVT-v2, Swin, CSWin), train form and fused deploy form;
importing the package registers them (see :mod:`zoo.mindspore.registry`)."""
from . import cswin, deit, pvt, swin  # noqa: F401  (the imports register the twins)
