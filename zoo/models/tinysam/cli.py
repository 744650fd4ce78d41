"""Command line: PNG overlays of TinySAM masks for a point prompt or for everything in an image.

    python -m zoo.models.tinysam --image IMG --point X,Y [--checkpoint tinysam_42.3.pth] [--out masks.png]
    python -m zoo.models.tinysam --image IMG --everything [--grid] [--checkpoint ...]
    python -m zoo.models.tinysam --model tinysam_w8a8 --checkpoint tinysam_w8a8.pth --image IMG --point X,Y
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

from ...checkpoint_io import check_archive
from ...command_line import run_command
from ...images import read_image
from ...registry import hub_source
from .mask_generator import SamMaskGenerator
from .predictor import SamPredictor
from .sam import SAM_MODELS, create_sam

__all__ = ['main', 'overlay']


def overlay(image: np.ndarray, masks: List[np.ndarray], alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """Blend each boolean HxW mask into the HxWx3 uint8 image with its own colour (largest first)."""
    rng = np.random.default_rng(seed)
    out = image.astype(np.float32)
    for mask in sorted(masks, key=lambda m: -int(m.sum())):
        colour = rng.integers(0, 256, 3).astype(np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out.clip(0, 255).astype(np.uint8)


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--point expects X,Y (pixels), got {text!r}') from None
    return x, y


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m zoo.models.tinysam', description=__doc__.split('\n')[0])
    parser.add_argument('--image', required=True, help='input image (any format PIL reads)')
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument('--point', type=_point, action='append', help='foreground point X,Y (repeatable)')
    mode.add_argument('--everything', action='store_true', help='segment everything (hierarchical by default)')
    parser.add_argument('--grid', action='store_true', help='with --everything: decode the full grid instead')
    parser.add_argument('--model', default='tinysam',
                        help='tinysam, tinysam_w8a8 (Q-TinySAM, fake-quantized), or a Hub folder of either '
                             '(hf-hub:ORG/NAME, local-dir:PATH)')
    parser.add_argument('--checkpoint', default=None,
                        help='official tinysam_42.3.pth / tinysam_w8a8.pth, or a zoo Q-TinySAM .safetensors '
                             '(default: download the release)')
    parser.add_argument('--points-per-side', type=int, default=32)
    parser.add_argument('--out', default=None, help='output PNG (default: <image>_masks.png)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    hub = hub_source(args.model) is not None
    if not hub and args.model not in SAM_MODELS:
        parser.error(f'--model {args.model!r}: choose {" or ".join(sorted(SAM_MODELS))}, or hf-hub:ORG/NAME / '
                     f'local-dir:PATH')
    if hub and args.checkpoint is not None:
        parser.error(f'{args.model} brings its own weights; drop --checkpoint')
    if args.points_per_side < 1:
        parser.error(f'--points-per-side {args.points_per_side}: it must be a positive integer (e.g. 32)')
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f'--device {args.device!r} is not a device name; use cpu, cuda or cuda:N')
    if device.type == 'cuda' and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        parser.error(f'--device {args.device}: no such CUDA device here; use --device cpu')
    if args.checkpoint is not None:
        if not os.path.isfile(args.checkpoint):
            parser.error(f'no checkpoint at {args.checkpoint}')
        check_archive(args.checkpoint)  # empty, truncated or corrupt: one clear line

    image = np.array(read_image(args.image))
    h, w = image.shape[:2]
    outside = [f'{x:g},{y:g}' for x, y in args.point or () if not (0 <= x < w and 0 <= y < h)]
    if outside:
        parser.error(f'--point {outside[0]} lies outside the {w}x{h} image; give X,Y in pixels within it')
    try:
        model = create_sam(args.model, checkpoint=args.checkpoint, pretrained=args.checkpoint is None,
                           device=args.device)
    except (ValueError, FileNotFoundError) as e:  # a bad checkpoint or Hub folder: one line, status 2
        parser.error(str(e))
    if args.everything:
        gen = SamMaskGenerator(model, points_per_side=args.points_per_side)
        anns = gen.generate(image) if args.grid else gen.hierarchical_generate(image)
        masks = [a['segmentation'] for a in anns]
        print(f"{len(masks)} masks from {gen.stats['prompts']} prompts ({gen.stats['first_pass']} + "
              f"{gen.stats['second_pass']}) in {gen.stats['seconds']:.2f} s")
    else:
        predictor = SamPredictor(model)
        predictor.set_image(image)
        points = np.array(args.point, dtype=float)
        masks, scores, _ = predictor.predict(points, np.ones(len(points), dtype=int))
        best = int(scores.argmax())
        masks = [masks[best]]
        print(f'mask {best} of {len(scores)}, predicted IoU {scores[best]:.3f}')
    out = args.out or args.image.rsplit('.', 1)[0] + '_masks.png'
    Image.fromarray(overlay(image, masks)).save(out)
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(run_command(main))
