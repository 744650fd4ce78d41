"""Linear layers of SLAB's deploy form: the same weights, run through oneDNN's matmul for CPU inference.

The deploy form (``model.fuse()``) exists for inference, and its time is matrix products: about three
quarters of a CPU forward pass is the blocks' linears. On CPU, PyTorch's ``F.linear`` goes to the BLAS
(MKL), while oneDNN's matmul, reached through ``torch.ops.mkldnn._linear_pointwise`` (what inductor calls for
CPU linears), ran the same products 5-15% faster at SLAB's shapes on the CPUs measured (up to 1.5x for the
narrow outputs of PVT's first stage) and applies a following GELU in the same pass, so the MLP's hidden
activations are written once. Same arithmetic up to float rounding. The oneDNN path is taken only in a
plain inference call: CPU float32 tensors, no gradient wanted, no autocast, and not while tracing,
scripting, compiling, exporting or running under a dispatch mode such as the FLOP counter (those all see
``F.linear``, which they know). State-dict keys are unchanged: the layers keep their ``weight`` and
``bias`` parameters, shared with the layer they replace (nothing derived is cached).
"""
from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

__all__ = ['DeployLinear', 'deploy_linears']


def _has_onednn_linear() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._linear_pointwise is not None
    except (AttributeError, RuntimeError):
        return False


_ONEDNN_LINEAR = _has_onednn_linear()


def _is_fx_tracing() -> bool:
    from torch.fx import _symbolic_trace as fx  # is_fx_tracing() itself logs a warning on every call
    return (getattr(fx, 'is_fx_symbolic_tracing', None) or fx.is_fx_tracing)()


def _dispatch_mode_active() -> bool:
    try:
        from torch.utils._python_dispatch import _get_current_dispatch_mode
    except ImportError:  # pragma: no cover - older / newer torch
        return False
    return _get_current_dispatch_mode() is not None


@torch.jit.unused
def _onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True for a plain CPU float32 inference call (see the module docstring). Under a dispatch mode (the
    FLOP counter of ``zoo.benchmark``, fake tensors) the layer runs ``F.linear``, whose products they count."""
    if not _ONEDNN_LINEAR or _is_fx_tracing() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if _dispatch_mode_active():
        return False
    if x.device.type != 'cpu' or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.numel() == 0:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return not torch.is_autocast_enabled('cpu')


@torch.jit.unused
def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], post_op: str) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post_op, [], 'none' if post_op == 'gelu' else '')


class DeployLinear(nn.Linear):
    """An ``nn.Linear`` (optionally followed by exact GELU, ``post_op='gelu'``) that runs through oneDNN in
    plain CPU inference calls and through ``F.linear`` (then ``F.gelu``) otherwise."""

    def __init__(self, linear: nn.Linear, post_op: str = 'none'):
        nn.Module.__init__(self)
        if post_op not in ('none', 'gelu'):
            raise ValueError(f"post_op must be 'none' or 'gelu', got {post_op!r}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # the same Parameters: the state dict and any optimizer see no change
        self.bias = linear.bias
        self.post_op = post_op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and _onednn_applies(x, self.weight):
            return _onednn_linear(x, self.weight, self.bias, self.post_op)
        x = F.linear(x, self.weight, self.bias)
        return F.gelu(x) if self.post_op == 'gelu' else x

    def extra_repr(self) -> str:
        return super().extra_repr() + (f', post_op={self.post_op}' if self.post_op != 'none' else '')


def _fusable_gelu(act: nn.Module) -> bool:
    return type(act) is nn.GELU and act.approximate == 'none'


def deploy_linears(module: nn.Module) -> None:
    """Replace every ``nn.Linear`` inside ``module`` (in place) by a :class:`DeployLinear` on the same
    parameters; the ``fc1`` of a timm ``Mlp`` (fc1, act, ...) with exact GELU takes the GELU in, and ``act``
    becomes ``nn.Identity`` (not PVT-v2's MLP, whose GELU comes after a convolution)."""
    for parent in list(module.modules()):
        fuse_act = type(parent) is Mlp and type(parent.fc1) is nn.Linear and _fusable_gelu(parent.act)
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, DeployLinear(child, 'gelu' if (fuse_act and name == 'fc1') else 'none'))
        if fuse_act:
            parent.act = nn.Identity()
