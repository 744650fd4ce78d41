"""Command line: quantize a float TinySAM (W8A8 by default) on a folder of images, write zoo's Q-TinySAM file.

    python -m zoo.models.tinysam.calibrate --checkpoint tinysam_42.3.pth --images DIR \\
        --out tinysam_w8a8_zoo.safetensors [--num-images 8] [--check photo.jpg]

The search follows Q-TinySAM's recipe (see :mod:`.calibration`); ``--check`` compares the quantized and float
models on a grid of point prompts on another image (:func:`mask_agreement`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from PIL import Image

from .amg import build_point_grid
from .calibration import SearchConfig, calibrate_sam
from .predictor import SamPredictor
from .quantize import default_quant_layers, save_quantized
from .sam import TinySam, create_sam

__all__ = ['main', 'mask_agreement', 'read_images']

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def read_images(folder: str, limit: int) -> List[np.ndarray]:
    """The first ``limit`` images of ``folder`` (sorted by name) as RGB arrays."""
    if not os.path.isdir(folder):
        raise ValueError(f'--images {folder!r} is not a folder')
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise ValueError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {folder!r}')
    return [np.array(Image.open(os.path.join(folder, n)).convert('RGB')) for n in names[:limit]]


@torch.no_grad()
def mask_agreement(reference: TinySam, other: TinySam, image: np.ndarray, points_per_side: int = 4) -> Dict[str, float]:
    """How closely ``other`` reproduces ``reference`` on a grid of single-point prompts over ``image``.

    Returns the mean and minimum IoU between their masks (all three masks of every prompt, at the image's
    size), how often they pick the same best mask, and the largest difference of their IoU predictions.
    """
    points = build_point_grid(points_per_side) * np.array(image.shape[1::-1])
    outputs = []
    for model in (reference, other):
        predictor = SamPredictor(model)
        predictor.set_image(image)
        masks, iou, _ = predictor.predict(points[:, None], np.ones((len(points), 1), dtype=int))
        outputs.append((torch.as_tensor(masks), torch.as_tensor(iou)))
    (masks_a, iou_a), (masks_b, iou_b) = outputs
    inter = (masks_a & masks_b).flatten(2).sum(-1).float()
    union = (masks_a | masks_b).flatten(2).sum(-1).float()
    mask_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return {'mask_iou_mean': mask_iou.mean().item(), 'mask_iou_min': mask_iou.min().item(),
            'same_best_mask': (iou_a.argmax(1) == iou_b.argmax(1)).float().mean().item(),
            'iou_pred_max_abs_diff': (iou_a - iou_b).abs().max().item(), 'prompts': len(points)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m zoo.models.tinysam.calibrate', description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', default=None,
                        help='float TinySAM, e.g. tinysam_42.3.pth (default: download it)')
    parser.add_argument('--images', required=True, help='folder of calibration images')
    parser.add_argument('--out', required=True, help='Q-TinySAM file to write (.safetensors)')
    parser.add_argument('--num-images', type=int, default=8, help='calibration images (the paper uses 8)')
    parser.add_argument('--bits', type=int, default=8, help='weight and activation bits (W8A8)')
    parser.add_argument('--candidates', type=int, default=SearchConfig.candidates, help='scale candidates per search')
    parser.add_argument('--search-range', type=float, nargs=2, default=SearchConfig.search_range,
                        metavar=('LOW', 'HIGH'), help='candidates span LOW..HIGH x the range-based scale')
    parser.add_argument('--rounds', type=int, default=SearchConfig.rounds, help='weight / input alternations')
    parser.add_argument('--rows-per-image', type=int, default=SearchConfig.rows_per_image,
                        help='input rows sampled per image for a linear layer\'s cost')
    parser.add_argument('--window', type=int, default=SearchConfig.window,
                        help='output window (pixels per side) sampled per image for a convolution\'s cost')
    parser.add_argument('--points-per-side', type=int, default=4, help='prompt grid per calibration image')
    parser.add_argument('--check', default=None, help='an image to compare quantized and float masks on')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error('--num-images must be >= 1')

    config = SearchConfig(args.candidates, tuple(args.search_range), args.rounds, args.rows_per_image, args.window)
    images = read_images(args.images, args.num_images)
    model = create_sam('tinysam', checkpoint=args.checkpoint, pretrained=args.checkpoint is None)
    layers = default_quant_layers(model, args.bits, args.bits)
    print(f'calibrating {len(layers)} layers (W{args.bits}A{args.bits}) on {len(images)} images: {config}')
    start = time.perf_counter()
    quantized = calibrate_sam(model, images, layers, config, args.points_per_side, args.seed, log=print)
    print(f'calibrated in {time.perf_counter() - start:.1f} s')
    save_quantized(args.out, quantized.state_dict(), layers)
    print(f'wrote {args.out}; load it with zoo.create_sam("tinysam_w8a8", checkpoint={args.out!r})')
    if args.check:
        image = np.array(Image.open(args.check).convert('RGB'))
        stats = mask_agreement(model, quantized, image)
        print(f'{args.check}: ' + ', '.join(f'{k} {v:.4g}' for k, v in stats.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
