"""FastMIM (Guo et al., 2022): masked image modelling at low resolution with HOG targets, for any backbone.

:class:`MaskedImageModel` wraps a staged timm / zoo backbone (``forward_intermediates`` and ``feature_info``,
the zoo's model contract): ViTs, Swin / PVT / SLAB, ViG, Wave-MLP, CNNs alike.

- Masking: a random set of ``mask_patch`` x ``mask_patch`` squares per image. FastMIM masks 32-px squares of
  128-px images (the largest stride of a hierarchical backbone: a 4 x 4 grid); by default the squares are the
  largest stride too, shrunk on small inputs to keep at least that 4 x 4 grid (a 32-px square would hide all
  of a 32-px digit) but never below the patch embedding's stride or a target cell, so that every embedding
  position and every target cell is wholly masked or wholly visible. A grid on which the ratio hides
  nothing or everything is refused.
- Mask token: a learned vector written into the masked positions of the backbone's patch embedding, i.e. the
  output of its first convolution (the ViT / Swin / PVT patch projection, a CNN or ViG stem's first conv),
  through a forward hook. The backbone's code and state-dict layout stay untouched, so the pre-trained
  encoder loads into a plain ``timm.create_model(name)``. (A stem conv wider than its stride lets a visible
  position see the rim pixel of a neighbouring masked square; with masks of 16-32 px this is negligible.)
- Decoder: a light transformer over the last-stage tokens, sized to the backbone, predicting per token the
  HOG cells (or pixels) of its ``stride`` x ``stride`` patch; the loss is the mean squared error on the
  masked cells (pixels) only, as SimMIM counts masked pixels when its squares are finer than a token.
- FastMIM-P: ``sizes`` / ``size_epochs`` enlarge the input resolution epoch by epoch; batches are resized on
  their device, the epoch is derived from the global step (so the schedule survives ``--resume``).
"""
from __future__ import annotations

import contextlib
import inspect
import math
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from .config import ConfigError, TrainConfig
from .hog import hog_patch_targets, patchify, pixel_patch_targets
from .training_net import TrainingNet

__all__ = ['random_block_mask', 'patch_embedding_conv', 'final_feature_map', 'MIMDecoder', 'MaskedImageModel',
           'masked_mse_loss', 'size_for_epoch', 'build_masked_image_model', 'mim_objective', 'validate_fastmim']


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def random_block_mask(batch: int, grid: tuple[int, int], ratio: float, device: torch.device | str = 'cpu',
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(B, gh, gw) bool: exactly ``gh * gw - int(gh * gw * (1 - ratio))`` masked cells per image, at random."""
    n = grid[0] * grid[1]
    num_masked = n - int(n * (1. - ratio))
    noise = torch.rand(batch, n, device=device, generator=generator)
    mask = torch.zeros(batch, n, dtype=torch.bool, device=device)
    mask.scatter_(1, noise.argsort(1)[:, :num_masked], True)
    return mask.view(batch, *grid)


def patch_embedding_conv(model: nn.Module) -> nn.Conv2d:
    """The backbone's first convolution: ``pretrained_cfg['first_conv']``, else the first Conv2d it holds."""
    name = (getattr(model, 'pretrained_cfg', None) or {}).get('first_conv')
    if isinstance(name, str):
        try:
            module = model.get_submodule(name)
        except AttributeError:
            module = None
        if isinstance(module, nn.Conv2d):
            return module
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError(f'{type(model).__name__} has no convolutional patch embedding / stem to insert the '
                     f'mask token into')


def final_feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last stage's features as (B, C, h, w), final norm applied where the model has one."""
    kwargs = dict(indices=1, intermediates_only=True, output_fmt='NCHW')
    if 'norm' in inspect.signature(model.forward_intermediates).parameters:
        kwargs['norm'] = True
    return model.forward_intermediates(x, **kwargs)[-1]


def size_for_epoch(sizes: Sequence[int], size_epochs: Sequence[int], epoch: int) -> int:
    """The FastMIM-P input size of ``epoch``: the size of the last phase that has started."""
    current = sizes[0]
    for size, start in zip(sizes, size_epochs):
        if epoch >= start:
            current = size
    return current


class MIMDecoder(nn.Module):
    """The mask token and the light decoder: last-stage tokens -> one target vector per token."""

    def __init__(self, embed_chs: int, encoder_chs: int, out_dim: int, dim: int, depth: int):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(embed_chs))
        self.embed = nn.Linear(encoder_chs, dim)
        self.blocks = nn.Sequential(*[Block(dim, num_heads=max(dim // 32, 1), qkv_bias=True)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, out_dim)
        self.apply(_init_weights)
        trunc_normal_(self.mask_token, std=.02)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, h * w, out_dim)."""
        x = self.embed(features.flatten(2).transpose(1, 2))
        return self.pred(self.norm(self.blocks(x)))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)


def masked_mse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked entries only: ``pred`` / ``target`` (..., D), ``mask`` (...) bool (one
    flag per token, or per target cell of each token)."""
    return (pred.float()[mask] - target[mask]).pow(2).mean()


class MaskedImageModel(TrainingNet):
    """A backbone (``student``) pre-trained by FastMIM; forward gives ``(None, (prediction, target, mask))``:
    prediction and target (B, L, K, D) hold the D values of each of the K target cells (HOG cells or pixels) of
    the L last-stage tokens, mask (B, L, K) flags the masked cells.

    Args:
        student: the backbone; its state dict is what pre-training produces.
        img_size: the input size the loader delivers (the largest of ``sizes``).
        mask_ratio: share of mask squares hidden per image.
        mask_patch: side of a mask square in pixels; 0: the largest stride, shrunk to keep a 4 x 4 grid on
            small inputs (see the module notes).
        target: 'hog' (FastMIM) or 'pixel' (SimMIM-style RGB regression).
        hog_bins, hog_cell: orientation bins and cell size of the HOG target.
        norm_target: L2-normalise each HOG cell / standardise each pixel patch.
        decoder_dim: decoder width; 0 sizes it to the backbone (half its last-stage width, 32..256).
        decoder_depth: transformer blocks in the decoder.
        sizes, size_epochs: FastMIM-P's schedule (input size from epoch ``size_epochs[i]`` on); empty keeps
            ``img_size`` throughout.
        epochs: the run's epoch count (maps the global step to the epoch).
        in_chans: image channels (the loader's RGB: 3).
    """
    extra_no_weight_decay = ('decoder.mask_token',)

    def __init__(self, student: nn.Module, *, img_size: int, mask_ratio: float = 0.75, mask_patch: int = 0,
                 target: str = 'hog', hog_bins: int = 9, hog_cell: int = 8, norm_target: bool = True,
                 decoder_dim: int = 0, decoder_depth: int = 1, sizes: Sequence[int] = (),
                 size_epochs: Sequence[int] = (), epochs: int = 1, in_chans: int = 3):
        super().__init__()
        if not hasattr(student, 'forward_intermediates') or not getattr(student, 'feature_info', None):
            raise ValueError(f'FastMIM needs a staged backbone (forward_intermediates and feature_info); '
                             f'{type(student).__name__} has neither')
        self.student = student
        last = student.feature_info[-1]
        self.stride = int(last['reduction'])
        self.sizes = list(sizes) or [img_size]
        self.size_epochs = list(size_epochs) or [0]
        if target == 'hog':
            if self.stride % hog_cell:
                raise ValueError(f'HOG cells of {hog_cell} px must tile the backbone\'s {self.stride}-px stride; '
                                 f'choose a cell size that divides it')
            self.cell = hog_cell
            out_dim = (self.stride // hog_cell) ** 2 * in_chans * hog_bins
        elif target == 'pixel':
            self.cell = 1
            out_dim = self.stride ** 2 * in_chans
        else:
            raise ValueError(f"MIM target must be 'hog' or 'pixel', got {target!r}")
        self.embed_conv = patch_embedding_conv(student)
        self.embed_stride = self._embedding_stride(in_chans)
        self.mask_patch = mask_patch or self._default_mask_patch()
        self._check_mask_geometry(mask_ratio)
        self.mask_ratio, self.target = mask_ratio, target
        self.hog_bins, self.hog_cell, self.norm_target = hog_bins, hog_cell, norm_target
        self.epochs = epochs
        self.input_size = self.sizes[0]
        encoder_chs = int(last['num_chs'])
        dim = decoder_dim or min(256, max(32, 32 * round(encoder_chs / 64)))
        self.decoder = MIMDecoder(self.embed_conv.out_channels, encoder_chs, out_dim, dim, decoder_depth)
        self._grid_mask: Optional[torch.Tensor] = None
        self.embed_conv.register_forward_hook(self._insert_mask_token)
        self._check_sizes(in_chans)

    @torch.no_grad()
    def _embedding_stride(self, in_chans: int) -> int:
        """The stride of the patch embedding, where the mask token goes: measured on one probe at the largest
        size (every size is checked by :meth:`_check_sizes`)."""
        size = max(self.sizes)
        seen: list[int] = []
        handle = self.embed_conv.register_forward_hook(lambda m, a, out: seen.append(out.shape[-1]))
        was_training = self.student.training
        self.student.eval()
        try:
            final_feature_map(self.student, torch.zeros(1, in_chans, size, size,
                                                         device=next(self.student.parameters()).device))
        except Exception as e:  # the backbone's own error, whatever its type
            raise ValueError(f'the backbone cannot take {size}x{size} inputs ({e})') from e
        finally:
            handle.remove()
            self.student.train(was_training)
        return max(size // seen[0], 1)

    def _default_mask_patch(self) -> int:
        """The largest stride, or a smaller square that keeps a 4 x 4 grid at the smallest input size, kept a
        multiple of the embedding stride and of the target cell."""
        unit = _lcm(self.embed_stride, self.cell)
        patch = min(self.stride, min(self.sizes) // 4)
        return max(unit, patch // unit * unit)

    def _check_mask_geometry(self, mask_ratio: float) -> None:
        unit = _lcm(self.embed_stride, self.cell)
        if self.mask_patch % unit:
            raise ValueError(f'the mask patch ({self.mask_patch} px) must be a multiple of the patch embedding\'s '
                             f'stride ({self.embed_stride} px) and of the target cell ({self.cell} px), so that '
                             f'each embedding position and target cell is wholly masked or visible')
        for size in self.sizes:
            if size % self.mask_patch or size % self.stride:
                raise ValueError(f'input size {size} must be a multiple of the mask patch ({self.mask_patch} px) '
                                 f'and of the backbone\'s largest stride ({self.stride} px)')
        num_cells = (min(self.sizes) // self.mask_patch) ** 2
        visible = int(num_cells * (1. - mask_ratio))
        if visible == num_cells:
            raise ValueError(f'mask ratio {mask_ratio} masks nothing on a grid of {num_cells} mask patches; '
                             f'raise it or use a smaller mask patch')
        if visible < 1:
            raise ValueError(f'mask ratio {mask_ratio} masks all of a grid of {num_cells} mask patch(es) of '
                             f'{self.mask_patch} px at {min(self.sizes)} px: the encoder would never see the '
                             f'image; use a smaller --mim-mask-patch, larger images or a lower ratio')

    @torch.no_grad()
    def _check_sizes(self, in_chans: int) -> None:
        """One forward per scheduled input size, before training: a backbone that cannot take a size (or whose
        last stage does not have the expected stride there) fails now, not epochs later."""
        was_training = self.student.training
        device = next(self.student.parameters()).device
        self.student.eval()
        try:
            for size in self.sizes:
                try:
                    probe = torch.zeros(1, in_chans, size, size, device=device)
                    grid = final_feature_map(self.student, probe).shape[-2:]
                except Exception as e:  # the backbone's own error, whatever its type
                    raise ValueError(f'the backbone cannot take {size}x{size} inputs ({e}); FastMIM-P needs one '
                                     f'that accepts every size of the schedule') from e
                if tuple(grid) != (size // self.stride,) * 2:
                    raise ValueError(f'the backbone gives a {tuple(grid)} last-stage map for {size}x{size} inputs; '
                                     f'expected stride {self.stride}')
        finally:
            self.student.train(was_training)

    def aux_modules(self) -> dict[str, nn.Module]:
        """What pre-training adds to the backbone: saved apart from the model weights, for --resume only."""
        return {'mim_decoder': self.decoder}

    def on_train_step(self, step: int, total_steps: int) -> None:
        """FastMIM-P: the input size of the epoch this step belongs to."""
        epoch = step * self.epochs // max(total_steps, 1)
        self.input_size = size_for_epoch(self.sizes, self.size_epochs, epoch)

    def _insert_mask_token(self, module: nn.Module, args, output: torch.Tensor) -> Optional[torch.Tensor]:
        if self._grid_mask is None:
            return None  # a plain forward of the backbone (validation, export) is untouched
        m = F.interpolate(self._grid_mask, size=output.shape[-2:], mode='nearest').to(output.dtype)
        token = self.decoder.mask_token.to(output.dtype).view(1, -1, 1, 1)
        return output * (1. - m) + token * m

    @contextlib.contextmanager
    def _masked(self, mask: torch.Tensor) -> Iterator[None]:
        self._grid_mask = mask.unsqueeze(1).float()
        try:
            yield
        finally:
            self._grid_mask = None

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction target of every last-stage token: (B, L, D)."""
        with torch.no_grad():
            if self.target == 'hog':
                return hog_patch_targets(x, self.stride, self.hog_bins, self.hog_cell, self.norm_target)
            return pixel_patch_targets(x, self.stride, self.norm_target)

    def forward(self, x: torch.Tensor) -> tuple[None, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode='bilinear', align_corners=False,
                              antialias=True)
        b, h, w = x.shape[0], x.shape[-2] // self.mask_patch, x.shape[-1] // self.mask_patch
        mask = random_block_mask(b, (h, w), self.mask_ratio, x.device)
        with self._masked(mask):
            features = final_feature_map(self.student, x)
        pred = self.decoder(features)
        scale = self.mask_patch // self.cell  # mask squares -> target cells, then grouped per last-stage token
        cells = mask.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        cell_mask = patchify(cells.unsqueeze(1).float(), self.stride // self.cell).bool()  # (B, L, K)
        k = cell_mask.shape[-1]
        return None, (pred.view(b, pred.shape[1], k, -1), self.targets(x).view(b, pred.shape[1], k, -1), cell_mask)


def build_masked_image_model(cfg: TrainConfig, student: nn.Module, teacher: None, num_classes: int) -> MaskedImageModel:
    """The FastMIM paradigm's network: ``student`` as the encoder, configured by the ``mim_*`` options."""
    try:
        return MaskedImageModel(
            student, img_size=cfg.img_size, mask_ratio=cfg.mim_mask_ratio, mask_patch=cfg.mim_mask_patch,
            target=cfg.mim_target, hog_bins=cfg.mim_hog_bins, hog_cell=cfg.mim_hog_cell,
            norm_target=cfg.mim_norm_target, decoder_dim=cfg.mim_decoder_dim, decoder_depth=cfg.mim_decoder_depth,
            sizes=cfg.mim_sizes, size_epochs=cfg.mim_size_epochs, epochs=cfg.epochs)
    except ValueError as e:
        raise ConfigError(f'{cfg.model}: {e}') from e


def masked_reconstruction_terms(logits: None, aux: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                                target: torch.Tensor, teacher_logits: None) -> dict[str, torch.Tensor]:
    """FastMIM's one loss term, ``mim``: mean squared error of the prediction on masked cells."""
    return {'mim': masked_mse_loss(*aux)}


def mim_objective(cfg: TrainConfig, mixup_active: bool):
    """The FastMIM paradigm's objective (no labels, no options)."""
    return masked_reconstruction_terms


def validate_fastmim(cfg: TrainConfig) -> None:
    """Refuse options FastMIM pre-training cannot take."""
    unsupported = [name for name, on in (
        (f'--distill {cfg.distill}', cfg.distill != 'none'), ('--mixup / --cutmix', cfg.mixup > 0 or cfg.cutmix > 0),
        ('--model-ema', cfg.model_ema), ('--reparameterize', cfg.reparameterize),
        ('--evaluate', cfg.evaluate)) if on]
    if unsupported:
        raise ConfigError(f'FastMIM pre-training takes no {", ".join(unsupported)} (it learns without labels; '
                          f'fine-tune the encoder with --initial-checkpoint, then evaluate that)')
    if not 0. < cfg.mim_mask_ratio < 1.:
        raise ConfigError(f'mim_mask_ratio must be between 0 and 1, got {cfg.mim_mask_ratio}')
    if cfg.mim_target not in ('hog', 'pixel'):
        raise ConfigError(f"mim_target must be 'hog' or 'pixel', got {cfg.mim_target!r}")
    if cfg.mim_hog_bins < 1 or cfg.mim_hog_cell < 1 or cfg.mim_mask_patch < 0 or cfg.mim_decoder_depth < 0:
        raise ConfigError('mim_hog_bins and mim_hog_cell must be >= 1; mim_mask_patch and mim_decoder_depth >= 0')
    if len(cfg.mim_sizes) != len(cfg.mim_size_epochs):
        raise ConfigError(f'mim_sizes ({cfg.mim_sizes}) and mim_size_epochs ({cfg.mim_size_epochs}) need one '
                          f'start epoch per size')
    if cfg.mim_sizes:
        if cfg.mim_size_epochs[0] != 0 or sorted(set(cfg.mim_size_epochs)) != list(cfg.mim_size_epochs):
            raise ConfigError(f'mim_size_epochs must start at 0 and increase, got {cfg.mim_size_epochs}')
        if max(cfg.mim_sizes) > cfg.img_size or min(cfg.mim_sizes) < 1:
            raise ConfigError(f'mim_sizes {cfg.mim_sizes} must lie within 1..img_size ({cfg.img_size}): the loader '
                              f'delivers img_size images and each epoch resizes them down on the device')
