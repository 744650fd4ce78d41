"""Linear layers and convolutions with their activation fused, through oneDNN, for CPU inference.

A GELU after a linear layer or a convolution is a second pass over the largest activations of many blocks, and
PyTorch's exact GELU is slow on CPU: in the MLPs and MBConvs of PyramidTNT, TinySAM and CGRSeg it took as long
as the product before it. oneDNN (what inductor calls for CPU linears and convolutions) applies the activation
while it writes the product, and its matmul is also faster than the BLAS ``F.linear`` reaches at many of these
shapes. Same arithmetic up to float rounding (oneDNN's exact GELU is erf-based too).

The fused path is taken only for a plain inference call: CPU float32 tensors, no gradient wanted, no autocast,
and not while tracing, scripting, compiling, exporting or under a dispatch mode such as a FLOP counter (those see
``F.linear`` / ``F.conv2d`` and the activation, which they know and count). Nothing is cached: the callers pass their own parameters.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, ConvMlp, Mlp
from timm.layers.activations import GELU as TimmGELU
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .batchnorm_fold import folded_conv_bn
from .hooks import observed

__all__ = ['is_fx_tracing', 'fusable_activation', 'plain_cpu_inference', 'onednn_applies', 'linear_act', 'conv2d_act',
           'OneDnnLinear', 'OneDnnMlp', 'use_onednn_linears', 'folded_conv_bn', 'conv_bn_act', 'FoldingConvNorm',
           'conv_mlp']

# oneDNN's post-op algorithm argument for each activation ('none': exact, erf-based GELU)
_ALGORITHMS = {'gelu': 'none', 'relu': '', 'none': ''}


def _has_onednn() -> bool:
    try:
        return (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._linear_pointwise is not None
                and torch.ops.mkldnn._convolution_pointwise is not None)
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = _has_onednn()


def is_fx_tracing() -> bool:
    from torch.fx import _symbolic_trace as fx  # is_fx_tracing() itself logs a warning on every call
    return (getattr(fx, 'is_fx_symbolic_tracing', None) or fx.is_fx_tracing)()


def fusable_activation(act: nn.Module) -> Optional[str]:
    """The oneDNN post-op name of an activation module it computes exactly ('gelu', 'relu'), else None."""
    if (type(act) is nn.GELU and act.approximate == 'none') or type(act) is TimmGELU:  # timm's: exact F.gelu
        return 'gelu'
    if type(act) is nn.ReLU:
        return 'relu'
    if type(act) is nn.Identity:
        return 'none'
    return None


def plain_cpu_inference(*tensors: torch.Tensor) -> bool:
    """True for a plain CPU float32 inference call on ``tensors`` (non-empty): not FX- or jit-tracing, compiling
    or under a dispatch mode, no gradient wanted and no autocast (see the module docstring).
    Hand-written CPU fast paths take it as their guard; anything else runs the general code."""
    if is_fx_tracing() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if _get_current_dispatch_mode() is not None:  # e.g. a FLOP counter (zoo.benchmark's MACs) or fake tensors
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t.device.type != 'cpu' or t.dtype != torch.float32 or t.numel() == 0 or (grad and t.requires_grad):
            return False
    return not torch.is_autocast_enabled('cpu')


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when oneDNN is available and the call is a plain CPU float32 inference call."""
    return _ONEDNN and plain_cpu_inference(x, weight)


def _activate(x: torch.Tensor, act: str) -> torch.Tensor:
    """The plain-path activation named by ``act`` (TorchScript compiles this; a dict of functions it cannot)."""
    if act == 'gelu':
        return F.gelu(x)
    if act == 'relu':
        return F.relu(x)
    return x


def linear_act(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], act: str = 'none') -> torch.Tensor:
    """``act(F.linear(x, weight, bias))`` for ``act`` in 'gelu' (exact), 'relu', 'none'."""
    if not torch.jit.is_scripting():  # TorchScript drops this branch without compiling it
        if onednn_applies(x, weight):
            if act == 'gelu':
                # the product, then aten's GELU in place on the fresh output: oneDNN's GELU post-op on a matmul was
                # 10-27% slower at PyramidTNT's and SLAB's MLP shapes (its convolutions' post-op is not: kept there)
                return torch.ops.aten.gelu_(torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'none', [], ''))
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, act, [], _ALGORITHMS[act])
    return _activate(F.linear(x, weight, bias), act)


def conv2d_act(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Sequence[int],
               padding: Sequence[int], dilation: Sequence[int], groups: int, act: str = 'none') -> torch.Tensor:
    """``act(F.conv2d(x, weight, bias, ...))`` for ``act`` in 'gelu' (exact), 'relu', 'none'; numeric padding.
    The output keeps the input's memory format, as ``F.conv2d``'s does."""
    if not torch.jit.is_scripting():  # TorchScript drops this branch without compiling it
        if onednn_applies(x, weight):
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, list(padding), list(stride), list(dilation), groups, act, [], _ALGORITHMS[act])
    return _activate(F.conv2d(x, weight, bias, stride, padding, dilation, groups), act)


class OneDnnLinear(nn.Linear):
    """An ``nn.Linear`` (same parameters and state dict) whose inference calls run through oneDNN's matmul, which
    beats the BLAS ``F.linear`` reaches at most shapes here (by up to 10x for the narrow ones of PyramidTNT's
    words, which the BLAS handles poorly)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_act(x, self.weight, self.bias)


class OneDnnMlp(Mlp):
    """timm's ``Mlp`` (fc1, act, drop, norm, fc2, drop; same parameters) with the activation fused into ``fc1``
    in inference calls when it is exact GELU or ReLU and ``fc1`` a plain linear layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act: Optional[str] = None
        if not torch.jit.is_scripting():  # TorchScript drops this branch: it runs the modules
            act = self._fusable_act()
        if act is not None:
            x = linear_act(x, self.fc1.weight, self.fc1.bias, act)
        else:
            x = self.act(self.fc1(x))
        return self.drop2(self.fc2(self.norm(self.drop1(x))))

    def _fusable_act(self) -> Optional[str]:
        """The activation's post-op name when ``fc1`` is a plain linear layer and neither module is hooked."""
        if type(self.fc1) not in (nn.Linear, OneDnnLinear) or observed(self.fc1, self.act):
            return None
        return fusable_activation(self.act)


_ONEDNN_CLASSES = {nn.Linear: OneDnnLinear, Mlp: OneDnnMlp}


def use_onednn_linears(module: nn.Module) -> nn.Module:
    """Run every plain ``nn.Linear`` and timm ``Mlp`` inside ``module`` as :class:`OneDnnLinear` /
    :class:`OneDnnMlp`, in place, by changing their class: parameters, state-dict keys, hooks and the module
    tree stay as they are (and ``isinstance`` checks still hold)."""
    for m in module.modules():
        cls = _ONEDNN_CLASSES.get(type(m))
        if cls is not None:
            m.__class__ = cls
    return module


def _batchnorm_act(bn: nn.Module) -> Optional[str]:
    """The post-op of an eval-mode BatchNorm (plain, or timm's BatchNormAct2d with an exact activation and no
    dropout) whose affine map can be folded into the convolution before it; None where it cannot."""
    if bn.training or getattr(bn, 'running_var', None) is None:
        return None
    if type(bn) is nn.BatchNorm2d:
        return 'none'
    if type(bn) is BatchNormAct2d and type(bn.drop) is nn.Identity:
        return fusable_activation(bn.act)
    return None


def conv_bn_act(x: torch.Tensor, conv: nn.Module, bn: nn.Module) -> Optional[torch.Tensor]:
    """``bn(conv(x))`` (``bn`` may carry its activation, as timm's BatchNormAct2d) with the eval-mode BatchNorm
    folded into the convolution and the activation fused (:func:`conv2d_act`): one pass over the output
    instead of two or three. None where that does not apply (training, a replaced or non-numeric-padding
    convolution), for the caller to run the modules."""
    act = _batchnorm_act(bn)
    if act is None or type(conv) is not nn.Conv2d or isinstance(conv.padding, str) or conv.padding_mode != 'zeros':
        return None
    if observed(conv, bn):  # hooked modules run as modules
        return None
    weight, bias = folded_conv_bn(conv, bn)
    return conv2d_act(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups, act)


class FoldingConvNorm(nn.Module):
    """Mixin for timm's conv + BatchNorm modules (attributes ``conv`` and ``bn``, e.g. EfficientFormerV2's
    ``ConvNorm`` and ``timm.layers.ConvNormAct`` without anti-aliasing): eval-mode calls run
    :func:`conv_bn_act`; anything else runs the modules as before. Use it as the first base of a subclass of
    the module's class (``class FoldingConvNormAct(FoldingConvNorm, ConvNormAct)``) and give existing modules
    that class: same parameters, state dict and module tree."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self, 'aa', None) is None:
            y = conv_bn_act(x, self.conv, self.bn)
            if y is not None:
                return y
        return super().forward(x)


def _eval_batchnorm(norm: nn.Module) -> bool:
    """A plain BatchNorm2d that normalises with its running statistics and has affine parameters."""
    return (type(norm) is nn.BatchNorm2d and not norm.training and norm.running_var is not None
            and norm.weight is not None)


def conv_mlp(x: torch.Tensor, mlp: ConvMlp, norm: Optional[nn.Module] = None) -> Optional[torch.Tensor]:
    """``mlp(norm(x))`` for timm's ``ConvMlp`` (1x1 convs) in one pass fewer or two: an eval-mode BatchNorm ``norm``
    before it folded into ``fc1``'s input side (``fc1(s * x + t) = (W s) x + (W t + b)``, exact for a 1x1 conv),
    and the activation fused into ``fc1`` (:func:`conv2d_act`). Differentiable. None where that does not apply
    (a train-mode or other norm, hooks, a replaced layer), for the caller to run the modules."""
    if is_fx_tracing():  # an FX graph records the modules (feature extraction, FX + TorchScript)
        return None
    fc1 = mlp.fc1
    act = fusable_activation(mlp.act)
    if act is None or type(fc1) is not nn.Conv2d or type(mlp.norm) is not nn.Identity or fc1.groups != 1:
        return None
    if norm is not None and not (_eval_batchnorm(norm) and fc1.kernel_size == (1, 1) and fc1.padding == (0, 0)):
        return None
    if observed(fc1, mlp.norm, mlp.act) or (norm is not None and observed(norm)):  # hooked: run as modules
        return None
    weight, bias = fc1.weight, fc1.bias
    if norm is not None:
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale
        shifted = weight.flatten(1) @ shift
        bias = shifted if bias is None else bias + shifted
        weight = weight * scale.view(1, -1, 1, 1)
    h = conv2d_act(x, weight, bias, fc1.stride, fc1.padding, fc1.dilation, fc1.groups, act)
    return mlp.fc2(mlp.drop(h))
