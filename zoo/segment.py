"""``python -m zoo.segment``: a colour mask of a zoo segmentation model's prediction over an image.

    python -m zoo.segment --model cgrseg_t --checkpoint cgrseg_t_ade20k.pth image.jpg [--out mask.png]

With 150 classes the colours are the ADE20K palette.

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

from .checkpoint_io import classifier_classes
from .command_line import run_command
from .images import read_image
from .registry import create_model, hub_source, model_info

__all__ = ['ADE20K_PALETTE', 'MAX_PIXELS', 'class_palette', 'input_size', 'segment_image', 'overlay_mask', 'main']

#: The largest input (height x width, after resizing) segment_image accepts: 8192 x 8192.
MAX_PIXELS = 8192 * 8192

#: The ADE20K class colours (the palette of the dataset's standard tools), as hex RGB, class 0 first.
_ADE20K_HEX = (
    '787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07',
    'e005ff ebff07 96053d 787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603',
    '0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff',
    '08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207',
    'ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f',
    '14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff',
    '0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00',
    '008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff',
    'ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2',
    '00ff52 000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000',
    '8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff',
    '00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3',
    'ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00',
    '00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff',
    '4700ff 7a00ff 00ffb8 005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff',
)
ADE20K_PALETTE = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in ' '.join(_ADE20K_HEX).split()],
                          dtype=np.uint8)


def class_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours: the ADE20K palette for 150 classes, otherwise a bit-interleaved
    colour map (the scheme of the PASCAL VOC palette) with distinct colours for any number of classes."""
    if num_classes == len(ADE20K_PALETTE):
        return ADE20K_PALETTE.copy()
    ids = np.arange(num_classes)
    colours = np.zeros((num_classes, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.astype(np.uint8)


def input_size(width: int, height: int, short_side: int, divisor: int = 32) -> tuple[int, int]:
    """(H, W) the model sees: the short side at ``short_side``, both sides rounded to multiples of ``divisor``.

    Raises ValueError for ``short_side <= 0`` and for a size beyond :data:`MAX_PIXELS` (a 1x320 strip at short
    side 512 would be 163840x512 and ask for hundreds of GB).
    """
    if short_side <= 0:
        raise ValueError(f'short side {short_side}: it must be a positive number of pixels (e.g. 512)')
    scale = short_side / min(width, height)
    h, w = (max(divisor, round(s * scale / divisor) * divisor) for s in (height, width))
    if h * w > MAX_PIXELS:
        raise ValueError(f'a {width}x{height} image resized to short side {short_side} would be {w}x{h} '
                         f'({h * w / 1e6:.0f}M pixels, more than {MAX_PIXELS / 1e6:.0f}M): crop the image to a less '
                         f'extreme aspect ratio or lower --short-side')
    return h, w


@torch.no_grad()
def segment_image(model: torch.nn.Module, image: Image.Image, short_side: int = 512, divisor: int = 32) -> np.ndarray:
    """(H, W) class indices for a PIL image, at the image's own size (resized as :func:`input_size` says)."""
    w0, h0 = image.size
    h, w = input_size(w0, h0, short_side, divisor)
    cfg = model.pretrained_cfg
    x = torch.from_numpy(np.array(image.convert('RGB').resize((w, h), Image.BILINEAR))).permute(2, 0, 1).float() / 255
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
    p.add_argument('--model', default='cgrseg_t',
                   help='a zoo segmentation model, or a Hub folder of one (hf-hub:ORG/NAME, local-dir:PATH)')
    p.add_argument('--checkpoint', type=Path, help='weights in the official layout (default: the release, if any)')
    p.add_argument('--num-classes', type=int,
                   help='classes of the checkpoint, checked against it (default: the checkpoint\'s, else 150 for ADE20K)')
    p.add_argument('--short-side', type=int, default=512)
    p.add_argument('--alpha', type=float, default=0.5)
    p.add_argument('--out', type=Path, help='output PNG (default: <image>_mask.png)')
    args = p.parse_args(argv)
    if args.short_side <= 0:
        p.error(f'--short-side {args.short_side}: the short side must be a positive number of pixels (e.g. 512)')
    if not 0. <= args.alpha <= 1.:
        p.error(f'--alpha {args.alpha}: the mask opacity must lie in [0, 1]')
    if args.num_classes is not None and args.num_classes < 1:
        p.error(f'--num-classes {args.num_classes}: a segmentation model needs at least one class')

    info = model_info(args.model)
    if info.task != 'segmentation':
        p.error(f'{args.model} is a {info.task} model; zoo.segment needs a segmentation model '
                f'(e.g. cgrseg_t)')
    if not args.image.is_file():
        p.error(f'no image at {args.image}')
    if args.checkpoint is not None and not args.checkpoint.is_file():
        p.error(f'no checkpoint at {args.checkpoint}')
    hub = hub_source(args.model) is not None
    if hub and args.checkpoint is not None:
        p.error(f'{args.model} brings its own weights; drop --checkpoint')
    if hub and args.num_classes is not None:
        p.error(f'{args.model} brings its own head and class count; drop --num-classes')
    cfg = None if hub else get_pretrained_cfg(args.model)
    if args.checkpoint is None and not hub and not (cfg and (cfg.url or cfg.hf_hub_id)):
        p.error(f'{args.model} has no released weights: pass --checkpoint PATH (official layout)')
    kwargs = {} if args.num_classes is None else dict(num_classes=args.num_classes)
    if args.checkpoint is not None:  # its head decides the class count: a head for another count would be random
        classes = classifier_classes(args.checkpoint, cfg.classifier)
        if args.num_classes is not None and args.num_classes != classes:
            p.error(f'--num-classes {args.num_classes} does not match the {classes} classes of {args.checkpoint}; '
                    f'drop --num-classes or pass {classes}')
        kwargs.update(num_classes=classes, pretrained_cfg_overlay=dict(file=str(args.checkpoint), num_classes=classes))
    elif args.num_classes is not None and args.num_classes != cfg.num_classes:
        p.error(f'--num-classes {args.num_classes} does not match the {cfg.num_classes} classes of the released '
                f'weights; drop --num-classes or pass --checkpoint with a head for {args.num_classes} classes')
    image = read_image(args.image)  # before the weights load: a bad image or size fails fast
    input_size(*image.size, args.short_side, info.input_divisor)
    model = create_model(args.model, pretrained=True, **kwargs)
    labels = segment_image(model, image, args.short_side, info.input_divisor)
    out = args.out or args.image.with_name(f'{args.image.stem}_mask.png')
    overlay_mask(image, labels, model.num_classes, args.alpha).save(out)
    present = np.bincount(labels.ravel(), minlength=model.num_classes)
    top = [f'{c} ({100 * present[c] / labels.size:.1f}%)' for c in np.argsort(-present)[:5] if present[c]]
    print(f'wrote {out}; largest classes: {", ".join(top)}')
    return 0


if __name__ == '__main__':
    sys.exit(run_command(main))
