"""PRepBN: progressive re-parameterised BatchNorm for transformers (SLAB, ICML 2024).

``RepBN(x) = BN(x) + alpha * x`` normalises tokens ``(..., C)`` over the channel dimension with batch
statistics, so at inference it is a per-channel affine map that folds into the neighbouring linear layer.
Training a transformer with BatchNorm from scratch is unstable, so :class:`PRepBN` starts from LayerNorm
(optionally alone for a warm-up) and blends linearly into RepBN::

    y = lam * LayerNorm(x) + (1 - lam) * RepBN(x),   lam = r0 * remaining_blend_steps / blend_steps

In eval mode it is RepBN alone. The blend is a function of the global training step, which the training
loop sets with :func:`set_norm_progress` (never a counter mutated inside ``forward``): resuming, gradient
accumulation, several forward passes per step and DDP ranks all see the same blend. The state is kept in
the official buffers (``warm``, ``iter``, ``total_step``: remaining warm-up steps, remaining blend steps,
blend length) so official checkpoints load and a saved model resumes where it stopped.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = [
    'RepBN', 'PRepBN', 'ChannelAffine', 'set_norm_progress', 'rep_bn_affine', 'fold_affine_into_linear',
    'fold_affine_after_conv', 'fold_affine_after_linear', 'fold_affine_into_conv', 'convert_norm_layout',
]


class RepBN(nn.Module):
    """``BN(x) + alpha * x`` over the last (channel) dimension of token tensors ``(..., C)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape) + self.alpha * x

    def fuse(self) -> 'ChannelAffine':
        """The eval-mode map as a per-channel affine (``timm.models.reparameterize_model`` calls this)."""
        return ChannelAffine(*rep_bn_affine(self))


class PRepBN(nn.Module):
    """LayerNorm (``norm1``) progressively replaced by :class:`RepBN` (``norm2``) during training.

    Args:
        dim: channels.
        blend_steps: training steps of the linear LayerNorm-to-RepBN blend.
        warmup_steps: steps of LayerNorm alone before the blend starts.
        r0: LayerNorm weight at the start of the blend.
        eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, blend_steps: int = 300000, warmup_steps: int = 0, r0: float = 1.0,
                 eps: float = 1e-5):
        super().__init__()
        self.warmup_steps = int(warmup_steps)
        self.r0 = r0
        self.register_buffer('warm', torch.tensor(self.warmup_steps))
        self.register_buffer('iter', torch.tensor(int(blend_steps)))
        self.register_buffer('total_step', torch.tensor(int(blend_steps)))
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = RepBN(dim)
        # from the arguments, not the buffers: a model built on the 'meta' device has no buffer values
        self._ln_weight: Optional[float] = self._blend_weight(self.warmup_steps, int(blend_steps), int(blend_steps))

    def set_progress(self, step: int) -> None:
        """Set the blend for global training step ``step`` (0 = first step)."""
        step = max(int(step), 0)
        total = int(self.total_step)
        self.warm.fill_(max(self.warmup_steps - step, 0))
        self.iter.fill_(min(max(total - (step - self.warmup_steps), 0), total))
        self._sync_from_buffers()

    @property
    def ln_weight(self) -> Optional[float]:
        """LayerNorm weight of the training blend; None during the LayerNorm-only warm-up."""
        return self._ln_weight

    def _sync_from_buffers(self) -> None:
        # read once here (at construction, load and set_progress), never in forward: no host sync per step
        self._ln_weight = self._blend_weight(int(self.warm), int(self.iter), int(self.total_step))

    def _blend_weight(self, warm: int, remaining: int, total: int) -> Optional[float]:
        """LayerNorm weight for the given warm-up / remaining / total blend steps; None while warming up."""
        return None if warm > 0 else self.r0 * remaining / max(total, 1)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._sync_from_buffers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.norm2(x)
        if self._ln_weight is None:
            return self.norm1(x)
        lam = self._ln_weight
        return lam * self.norm1(x) + (1.0 - lam) * self.norm2(x)

    def fuse(self) -> 'ChannelAffine':
        """The eval-mode map (RepBN) as a per-channel affine."""
        return ChannelAffine(*rep_bn_affine(self))

    def extra_repr(self) -> str:
        return f'warmup_steps={self.warmup_steps}, blend_steps={int(self.total_step)}, r0={self.r0}'


def set_norm_progress(model: nn.Module, step: int) -> int:
    """Set every :class:`PRepBN` in ``model`` to global training step ``step``; returns how many there are.

    Call it once per optimizer step (before the forward passes of that step) from the training loop.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, PRepBN):
            m.set_progress(step)
            n += 1
    return n


class ChannelAffine(nn.Module):
    """``x * scale + shift`` over the last dimension: the deploy form of a RepBN nothing could absorb."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.scale = nn.Parameter(scale.detach().clone())
        self.shift = nn.Parameter(shift.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


@torch.no_grad()
def rep_bn_affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``norm(x) == x * scale + shift`` in eval mode (RepBN or PRepBN)."""
    if isinstance(norm, PRepBN):
        norm = norm.norm2
    if isinstance(norm, ChannelAffine):
        return norm.scale.detach().clone(), norm.shift.detach().clone()
    if not isinstance(norm, RepBN):
        raise TypeError(f'expected RepBN / PRepBN / ChannelAffine, got {type(norm).__name__}')
    bn = norm.bn
    inv_std = torch.rsqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(inv_std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(inv_std)
    scale = gamma * inv_std + norm.alpha
    shift = beta - gamma * inv_std * bn.running_mean
    return scale, shift


@torch.no_grad()
def fold_affine_into_linear(linear: nn.Linear, scale: torch.Tensor, shift: torch.Tensor) -> nn.Linear:
    """A Linear equal to ``linear(x * scale + shift)`` (the affine acts on the input features)."""
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True,
                      device=linear.weight.device, dtype=linear.weight.dtype)
    fused.weight.copy_(linear.weight * scale[None, :])
    bias = linear.weight @ shift
    if linear.bias is not None:
        bias = bias + linear.bias
    fused.bias.copy_(bias)
    return fused


@torch.no_grad()
def fold_affine_after_linear(linear: nn.Linear, scale: torch.Tensor, shift: torch.Tensor) -> nn.Linear:
    """A Linear equal to ``linear(x) * scale + shift`` (the affine acts on the output features)."""
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True,
                      device=linear.weight.device, dtype=linear.weight.dtype)
    fused.weight.copy_(linear.weight * scale[:, None])
    bias = shift if linear.bias is None else linear.bias * scale + shift
    fused.bias.copy_(bias)
    return fused


@torch.no_grad()
def fold_affine_after_conv(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """A Conv2d equal to ``conv(x) * scale + shift`` per output channel."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    fused.bias.copy_(bias)
    return fused


def _norm_prefixes(keys: list[str], marker: str) -> set[str]:
    return {k[: -len(marker)] for k in keys if k.endswith(marker)}


def convert_norm_layout(state_dict: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor],
                        ln_factory: Callable[[int], nn.LayerNorm] = nn.LayerNorm) -> dict[str, torch.Tensor]:
    """Map norm keys between the two official layouts, whichever the checkpoint and the model use.

    The official code builds some variants with plain RepBN (``P.alpha``, ``P.bn.*``) and others with the
    progressive wrapper (``P.warm``, ``P.iter``, ``P.total_step``, ``P.norm1.*`` LayerNorm, ``P.norm2.*``
    RepBN). A progressive checkpoint loads into a RepBN model by keeping its RepBN; a RepBN checkpoint loads
    into a progressive model as a finished blend (RepBN, fresh LayerNorm, counters at the end).
    """
    out = dict(state_dict)
    ckpt_prog = _norm_prefixes(list(state_dict), '.warm')
    model_prog = _norm_prefixes(list(model_state), '.warm')
    for p in ckpt_prog - model_prog:
        if f'{p}.alpha' not in model_state:
            continue
        for k in [k for k in out if k.startswith(p + '.')]:
            v = out.pop(k)
            rest = k[len(p) + 1:]
            if rest.startswith('norm2.'):
                out[f'{p}.{rest[len("norm2."):]}'] = v
    for p in model_prog - ckpt_prog:
        if f'{p}.alpha' not in state_dict:
            continue
        for k in [k for k in out if k.startswith(p + '.')]:
            out[f'{p}.norm2.{k[len(p) + 1:]}'] = out.pop(k)
        dim = model_state[f'{p}.norm1.weight'].shape[0]
        ln = ln_factory(dim)
        out[f'{p}.norm1.weight'] = ln.weight.detach()
        out[f'{p}.norm1.bias'] = ln.bias.detach()
        out[f'{p}.warm'] = torch.zeros_like(model_state[f'{p}.warm'])
        out[f'{p}.iter'] = torch.zeros_like(model_state[f'{p}.iter'])
        out[f'{p}.total_step'] = model_state[f'{p}.total_step'].clone()
    return out


@torch.no_grad()
def fold_affine_into_conv(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """A Conv2d equal to ``conv(x * scale + shift)`` (per input channel); exact only without padding."""
    if any(p != 0 for p in conv.padding) or conv.groups != 1:
        raise ValueError('an input affine folds into a dense convolution without padding only')
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation,
                      bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.reshape(1, -1, 1, 1))
    bias = (conv.weight * shift.reshape(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    if conv.bias is not None:
        bias = bias + conv.bias
    fused.bias.copy_(bias)
    return fused
