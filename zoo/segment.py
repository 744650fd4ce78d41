"""``python -m zoo.segment``: a colour mask of a zoo segmentation model's prediction over an image.

    python -m zoo.segment --model cgrseg_t --checkpoint cgrseg_t_ade20k.pth image.jpg [--out mask.png]

For people who would rather look than read: the image is resized so its short side is ``--short-side``
(both sides rounded to the model's stride), segmented, and the per-class colours are blended over the
original image at its own size.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.models import get_pretrained_cfg

from .registry import create_model, model_info

__all__ = ['class_palette', 'segment_image', 'overlay_mask', 'main']


def class_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours, distinct for neighbouring class ids (bit-interleaved colour map,
    the scheme of the PASCAL VOC palette, extended to any number of classes)."""
    ids = np.arange(num_classes)
    colours = np.zeros((num_classes, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.astype(np.uint8)


@torch.no_grad()
def segment_image(model: torch.nn.Module, image: Image.Image, short_side: int = 512, divisor: int = 32) -> np.ndarray:
    """(H, W) class indices for a PIL image, at the image's own size."""
    w0, h0 = image.size
    scale = short_side / min(w0, h0)
    h, w = (max(divisor, round(s * scale / divisor) * divisor) for s in (h0, w0))
    cfg = model.pretrained_cfg
    x = torch.from_numpy(np.asarray(image.convert('RGB').resize((w, h), Image.BILINEAR))).permute(2, 0, 1).float() / 255
    x = (x - torch.tensor(cfg['mean']).view(3, 1, 1)) / torch.tensor(cfg['std']).view(3, 1, 1)
    logits = model.eval()(x.unsqueeze(0))
    logits = F.interpolate(logits, size=(h0, w0), mode='bilinear', align_corners=False)
    return logits.argmax(dim=1)[0].numpy()


def overlay_mask(image: Image.Image, labels: np.ndarray, num_classes: int, alpha: float = 0.5) -> Image.Image:
    """The image with each class's colour blended in (``alpha`` of the colour)."""
    colours = class_palette(num_classes)[labels]
    blended = (1 - alpha) * np.asarray(image.convert('RGB'), dtype=np.float32) + alpha * colours
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog='python -m zoo.segment', description=__doc__.split('\n\n')[0])
    p.add_argument('image', type=Path)
    p.add_argument('--model', default='cgrseg_t', help='a zoo segmentation model')
    p.add_argument('--checkpoint', type=Path, help='weights in the official layout (default: the release, if any)')
    p.add_argument('--num-classes', type=int, help='classes of the checkpoint (default: the model\'s, 150 for ADE20K)')
    p.add_argument('--short-side', type=int, default=512)
    p.add_argument('--alpha', type=float, default=0.5)
    p.add_argument('--out', type=Path, help='output PNG (default: <image>_mask.png)')
    args = p.parse_args(argv)

    info = model_info(args.model)
    if info.task != 'segmentation':
        p.error(f'{args.model} is a {info.task} model; zoo.segment needs a segmentation model '
                f'(e.g. cgrseg_t)')
    if not args.image.is_file():
        p.error(f'no image at {args.image}')
    if args.checkpoint is not None and not args.checkpoint.is_file():
        p.error(f'no checkpoint at {args.checkpoint}')
    cfg = get_pretrained_cfg(args.model)
    if args.checkpoint is None and not (cfg and (cfg.url or cfg.hf_hub_id)):
        p.error(f'{args.model} has no released weights: pass --checkpoint PATH (official layout)')
    kwargs = {} if args.num_classes is None else dict(num_classes=args.num_classes)
    if args.checkpoint is not None:
        kwargs['pretrained_cfg_overlay'] = dict(file=str(args.checkpoint))
    model = create_model(args.model, pretrained=True, **kwargs)

    image = Image.open(args.image)
    labels = segment_image(model, image, args.short_side, info.input_divisor)
    out = args.out or args.image.with_name(f'{args.image.stem}_mask.png')
    overlay_mask(image, labels, model.num_classes, args.alpha).save(out)
    present = np.bincount(labels.ravel(), minlength=model.num_classes)
    top = [f'{c} ({100 * present[c] / labels.size:.1f}%)' for c in np.argsort(-present)[:5] if present[c]]
    print(f'wrote {out}; largest classes: {", ".join(top)}')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, RuntimeError) as e:
        sys.exit(f'error: {e}')
