"""``Linear``: torch's fully connected layer (weight [out, in], bias by default) as MindSpore's ``nn.Dense``."""
from __future__ import annotations

from mindspore import nn


def Linear(in_features: int, out_features: int, bias: bool = True) -> nn.Dense:
    """An ``nn.Dense`` with torch's layout and names (``weight`` [out, in], ``bias``)."""
    return nn.Dense(in_features, out_features, has_bias=bias)
