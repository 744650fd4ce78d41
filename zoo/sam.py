"""``python -m zoo.sam``: TinySAM on the command line, one subcommand per job.

    python -m zoo.sam predict --image IMG --point X,Y [--model tinysam_w8a8] [--checkpoint FILE] [--out PNG]
    python -m zoo.sam everything --image IMG [--grid] [--points-per-side 32] [--compile] [--checkpoint FILE] [--out PNG]
    python -m zoo.sam calibrate --checkpoint tinysam_42.3.pth --images DIR --out tinysam_w8a8_zoo.safetensors
    python -m zoo.sam convert-w8a8 tinysam_w8a8.pth tinysam_w8a8_zoo.safetensors

``predict`` and ``everything`` write a PNG overlay of the masks. ``everything --compile`` compiles the image
encoder and the mask decoder with torch.compile first (the compile time is printed apart): many prompt batches
then run through one compiled decoder. Without a subcommand, ``--point`` means ``predict`` and ``--everything``
means ``everything`` (``python -m zoo.sam --image IMG --point X,Y``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .checkpoint_io import check_archive
from .command_line import run_command
from .images import read_image
from .models.tinysam import SamMaskGenerator, SamPredictor, TinySam
from .models.tinysam.build_sam import SAM_MODELS, build_tinysam_w8a8, create_sam
from .models.tinysam.quant import (SearchConfig, calibrate_sam, convert_w8a8_checkpoint, default_quant_layers,
                                   mask_agreement, save_quantized)
from .registry import hub_source

__all__ = ['main', 'overlay', 'read_images', 'compile_sam', 'IMAGE_SUFFIXES']

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
SUBCOMMANDS = ('predict', 'everything', 'calibrate', 'convert-w8a8')


def overlay(image: np.ndarray, masks: List[np.ndarray], alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """Blend each boolean HxW mask into the HxWx3 uint8 image with its own colour (largest first)."""
    rng = np.random.default_rng(seed)
    out = image.astype(np.float32)
    for mask in sorted(masks, key=lambda m: -int(m.sum())):
        colour = rng.integers(0, 256, 3).astype(np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out.clip(0, 255).astype(np.uint8)


def read_images(folder: str, limit: int) -> List[np.ndarray]:
    """The first ``limit`` images of ``folder`` (sorted by name) as RGB arrays."""
    if not os.path.isdir(folder):
        raise ValueError(f'--images {folder!r} is not a folder')
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise ValueError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {folder!r}')
    return [np.array(read_image(os.path.join(folder, n))) for n in names[:limit]]


def compile_sam(model: TinySam, backend: str = 'inductor') -> float:
    """Compile ``model``'s image encoder (one graph) and mask decoder (a dynamic number of prompts) in place with
    torch.compile, and run each once on zeros so that the compilation happens now; returns its seconds."""
    start = time.perf_counter()
    device = model.device
    zeros = torch.zeros(1, 3, model.img_size, model.img_size, device=device)
    with torch.no_grad():
        model.image_encoder(zeros)  # eager, to fill the attention-bias cache: the compiled graph guards on it
        model.image_encoder.compile(fullgraph=True, backend=backend)
        # a dynamic prompt count: the last prompt batch of an image is smaller, and needs no recompilation;
        # 5 prompts, not 2, which equals the token count of one point and its padding (one symbol for both)
        model.mask_decoder.compile(fullgraph=True, dynamic=True, backend=backend)
        embedding = model.image_encoder(zeros)
        model.decode(embedding, torch.zeros(5, 1, 2, device=device), torch.ones(5, 1, dtype=torch.int, device=device))
    return time.perf_counter() - start


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--point expects X,Y (pixels), got {text!r}') from None
    return x, y


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--image', required=True, help='input image (any format PIL reads)')
    parser.add_argument('--model', default='tinysam',
                        help='tinysam, tinysam_w8a8 (Q-TinySAM, fake-quantized), or a Hub folder of either '
                             '(hf-hub:ORG/NAME, local-dir:PATH)')
    parser.add_argument('--checkpoint', default=None,
                        help='official tinysam_42.3.pth / tinysam_w8a8.pth, or a zoo Q-TinySAM .safetensors '
                             '(default: download the release)')
    parser.add_argument('--out', default=None, help='output PNG (default: <image>_masks.png)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--framework', choices=('torch', 'mindspore'), default='torch',
                        help='run the network in torch, or in its MindSpore twin built from the same weights '
                             '([mindspore] extra; CPU, or where MindSpore puts it)')


def _with_subcommand(argv: Sequence[str]) -> List[str]:
    """The documented form without a subcommand (``--point`` / ``--everything``) as the subcommand form."""
    argv = list(argv)
    if not argv or argv[0] in SUBCOMMANDS or argv[0] in ('-h', '--help'):
        return argv
    if '--everything' in argv:
        return ['everything'] + [a for a in argv if a != '--everything']
    return ['predict'] + argv


def _load_sam(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TinySam:
    """The model the options name, every bad option reported as one parser error (exit status 2)."""
    hub = hub_source(args.model) is not None
    if not hub and args.model not in SAM_MODELS:
        parser.error(f'--model {args.model!r}: choose {" or ".join(sorted(SAM_MODELS))}, or hf-hub:ORG/NAME / '
                     f'local-dir:PATH')
    if hub and args.checkpoint is not None:
        parser.error(f'{args.model} brings its own weights; drop --checkpoint')
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
    try:
        return create_sam(args.model, checkpoint=args.checkpoint, pretrained=args.checkpoint is None,
                          device=args.device)
    except (ValueError, FileNotFoundError) as e:  # a bad checkpoint or Hub folder: one line, status 2
        parser.error(str(e))


def _mindspore_sam(parser: argparse.ArgumentParser, model: TinySam, **generator_kwargs):
    """(predictor, everything-mode generator) running the MindSpore twin of ``model``, same weights."""
    try:
        from .mindspore import from_torch
        from .mindspore.tinysam import MindSporeSamMaskGenerator, MindSporeSamPredictor
    except ImportError as e:
        parser.error(f'--framework mindspore: {e}')
    twin = from_torch(model)
    return MindSporeSamPredictor(twin), MindSporeSamMaskGenerator(twin, **generator_kwargs)


def _predict(parser: argparse.ArgumentParser, args: argparse.Namespace, image: np.ndarray) -> List[np.ndarray]:
    h, w = image.shape[:2]
    outside = [f'{x:g},{y:g}' for x, y in args.point if not (0 <= x < w and 0 <= y < h)]
    if outside:
        parser.error(f'--point {outside[0]} lies outside the {w}x{h} image; give X,Y in pixels within it')
    model = _load_sam(parser, args)
    predictor = _mindspore_sam(parser, model)[0] if args.framework == 'mindspore' else SamPredictor(model)
    predictor.set_image(image)
    points = np.array(args.point, dtype=float)
    masks, scores, _ = predictor.predict(points, np.ones(len(points), dtype=int))
    best = int(scores.argmax())
    print(f'mask {best} of {len(scores)}, predicted IoU {scores[best]:.3f}')
    return [masks[best]]


def _everything(parser: argparse.ArgumentParser, args: argparse.Namespace, image: np.ndarray) -> List[np.ndarray]:
    if args.points_per_side < 1:
        parser.error(f'--points-per-side {args.points_per_side}: it must be a positive integer (e.g. 32)')
    model = _load_sam(parser, args)
    if args.compile:
        if args.framework == 'mindspore':
            parser.error('--compile is torch.compile: drop it with --framework mindspore')
        print(f'compiled the image encoder and the mask decoder in {compile_sam(model):.1f} s')
    if args.framework == 'mindspore':
        gen = _mindspore_sam(parser, model, points_per_side=args.points_per_side)[1]
    else:
        gen = SamMaskGenerator(model, points_per_side=args.points_per_side)
    anns = gen.generate(image) if args.grid else gen.hierarchical_generate(image)
    print(f"{len(anns)} masks from {gen.stats['prompts']} prompts ({gen.stats['first_pass']} + "
          f"{gen.stats['second_pass']}) in {gen.stats['seconds']:.2f} s")
    return [a['segmentation'] for a in anns]


def _segment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    image = np.array(read_image(args.image))
    masks = (_predict if args.command == 'predict' else _everything)(parser, args, image)
    out = args.out or args.image.rsplit('.', 1)[0] + '_masks.png'
    Image.fromarray(overlay(image, masks)).save(out)
    print(f'wrote {out}')
    return 0


def _calibrate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
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
        stats = mask_agreement(model, quantized, np.array(read_image(args.check)))
        print(f'{args.check}: ' + ', '.join(f'{k} {v:.4g}' for k, v in stats.items()))
    return 0


def _convert_w8a8(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    converted = convert_w8a8_checkpoint(args.src)
    build_tinysam_w8a8(converted.layers, converted.state_dict)  # the layout must load before it is written
    save_quantized(args.dst, converted.state_dict, converted.layers)
    print(converted.summary())
    print(f'wrote {args.dst}; load it with zoo.create_sam("tinysam_w8a8", checkpoint={args.dst!r})')
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m zoo.sam', description=__doc__.split('\n')[0].split(': ')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n', 2)[2])
    commands = parser.add_subparsers(dest='command', metavar='{' + ','.join(SUBCOMMANDS) + '}')
    commands.required = True

    predict = commands.add_parser('predict', help='the best mask for foreground point prompts')
    _add_model_arguments(predict)
    predict.add_argument('--point', type=_point, action='append', required=True,
                         help='foreground point X,Y in pixels (repeatable)')

    everything = commands.add_parser('everything', help='segment everything (hierarchical by default)')
    _add_model_arguments(everything)
    everything.add_argument('--grid', action='store_true', help="decode SAM's full grid instead")
    everything.add_argument('--points-per-side', type=int, default=32)
    everything.add_argument('--compile', action='store_true',
                            help='torch.compile the encoder and the decoder first (compile time printed apart)')
    for sub in (predict, everything):
        sub.set_defaults(run=_segment, parser=sub)

    calibrate = commands.add_parser('calibrate', help='quantize a float TinySAM (W8A8) on a folder of images')
    calibrate.add_argument('--checkpoint', default=None, help='float TinySAM, e.g. tinysam_42.3.pth (default: '
                                                              'download it)')
    calibrate.add_argument('--images', required=True, help='folder of calibration images')
    calibrate.add_argument('--out', required=True, help='Q-TinySAM file to write (.safetensors)')
    calibrate.add_argument('--num-images', type=int, default=8, help='calibration images (the paper uses 8)')
    calibrate.add_argument('--bits', type=int, default=8, help='weight and activation bits (W8A8)')
    calibrate.add_argument('--candidates', type=int, default=SearchConfig.candidates,
                           help='scale candidates per search')
    calibrate.add_argument('--search-range', type=float, nargs=2, default=SearchConfig.search_range,
                           metavar=('LOW', 'HIGH'), help='candidates span LOW..HIGH x the range-based scale')
    calibrate.add_argument('--rounds', type=int, default=SearchConfig.rounds, help='weight / input alternations')
    calibrate.add_argument('--rows-per-image', type=int, default=SearchConfig.rows_per_image,
                           help="input rows sampled per image for a linear layer's cost")
    calibrate.add_argument('--window', type=int, default=SearchConfig.window,
                           help="output window (pixels per side) sampled per image for a convolution's cost")
    calibrate.add_argument('--points-per-side', type=int, default=4, help='prompt grid per calibration image')
    calibrate.add_argument('--check', default=None, help='an image to compare quantized and float masks on')
    calibrate.add_argument('--seed', type=int, default=0)
    calibrate.set_defaults(run=_calibrate, parser=calibrate)

    convert = commands.add_parser('convert-w8a8', help="the official tinysam_w8a8.pth -> zoo's Q-TinySAM file")
    convert.add_argument('src', help='official tinysam_w8a8.pth (a pickled module; read without running it)')
    convert.add_argument('dst', help='zoo Q-TinySAM file to write (.safetensors)')
    convert.set_defaults(run=_convert_w8a8, parser=convert)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _build_parser().parse_args(_with_subcommand(sys.argv[1:] if argv is None else argv))
    return args.run(args.parser, args)  # the subcommand's parser reports its own option errors


if __name__ == '__main__':
    raise SystemExit(run_command(main))
