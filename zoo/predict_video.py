"""``python -m zoo.predict_video``: the top-5 classes of a video clip under a zoo video model.

    python -m zoo.predict_video --model squeezetime_k400 --checkpoint SqueezeTime_K400_71.64.pth clip.mp4

The video is decoded with PyAV, ``num_frames`` frames are sampled (every ``--frame-interval``-th frame
around the middle of the video, as the Kinetics recipes sample; uniformly over the whole video when it
is too short), resized so the short side is ``--short-side``, centre-cropped to the model's input size
and normalised with its mean and std.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .registry import create_model, hub_source, model_info

__all__ = ['sample_indices', 'read_clip', 'main']


def sample_indices(num_available: int, num_frames: int, interval: int) -> np.ndarray:
    """Indices of ``num_frames`` frames, ``interval`` apart, centred in the video (uniform if too short)."""
    if num_available < 1:
        raise ValueError('the video has no frames')
    span = (num_frames - 1) * interval + 1
    if span <= num_available:
        start = (num_available - span) // 2
        return start + interval * np.arange(num_frames)
    return np.linspace(0, num_available - 1, num_frames).round().astype(int)


def read_clip(path: Path, num_frames: int, interval: int, short_side: int, crop: int,
              mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(3, num_frames, crop, crop) float clip, normalised."""
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a dependency of the dev/video installs
        raise RuntimeError('decoding video needs PyAV: python -m pip install av') from e
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f'{path} has no video stream')
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    idx = sample_indices(len(frames), num_frames, interval)
    clip = torch.from_numpy(np.stack([frames[i] for i in idx])).permute(0, 3, 1, 2).float() / 255  # T, 3, H, W
    h, w = clip.shape[-2:]
    scale = short_side / min(h, w)
    clip = F.interpolate(clip, size=(max(crop, round(h * scale)), max(crop, round(w * scale))),
                         mode='bilinear', align_corners=False)
    top, left = (clip.shape[-2] - crop) // 2, (clip.shape[-1] - crop) // 2
    clip = clip[..., top:top + crop, left:left + crop]
    clip = (clip - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return clip.permute(1, 0, 2, 3).contiguous()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog='python -m zoo.predict_video', description=__doc__.split('\n\n')[0])
    p.add_argument('video', type=Path)
    p.add_argument('--model', default='squeezetime_k400',
                   help='a zoo video model, or a Hub folder of one (hf-hub:ORG/NAME, local-dir:PATH)')
    p.add_argument('--checkpoint', type=Path, help='weights in the official layout (default: the release)')
    p.add_argument('--labels', type=Path, help='class names, one per line (default: class indices)')
    p.add_argument('--frame-interval', type=int, default=4)
    p.add_argument('--img-size', type=int, help='crop size (default: the model\'s input size)')
    p.add_argument('--short-side', type=int, help='resize before cropping (default: crop / 0.875)')
    p.add_argument('--topk', type=int, default=5)
    args = p.parse_args(argv)

    info = model_info(args.model)
    if info.task != 'video':
        p.error(f'{args.model} is a {info.task} model; zoo.predict_video needs a video model (e.g. squeezetime_k400)')
    for path, what in ((args.video, 'video'), (args.checkpoint, 'checkpoint'), (args.labels, 'labels file')):
        if path is not None and not path.is_file():
            p.error(f'no {what} at {path}')
    if hub_source(args.model) is not None and args.checkpoint is not None:
        p.error(f'{args.model} brings its own weights; drop --checkpoint')
    kwargs = {} if args.checkpoint is None else dict(pretrained_cfg_overlay=dict(file=str(args.checkpoint)))
    model = create_model(args.model, pretrained=True, **kwargs).eval()
    cfg = model.pretrained_cfg
    crop = args.img_size or cfg['input_size'][-1]
    short_side = args.short_side or round(crop / cfg.get('crop_pct', 0.875))
    clip = read_clip(args.video, model.num_frames, args.frame_interval, short_side, crop, cfg['mean'], cfg['std'])
    with torch.no_grad():
        probs = model(clip.unsqueeze(0)).softmax(dim=-1)[0]
    names = args.labels.read_text().splitlines() if args.labels else None
    if names is not None and len(names) != probs.numel():
        p.error(f'{args.labels} has {len(names)} names, the model predicts {probs.numel()} classes')
    values, indices = probs.topk(min(args.topk, probs.numel()))
    print(f'{args.video}: top-{len(indices)} of {probs.numel()} classes')
    for rank, (v, i) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
        print(f'{rank}. {names[i] if names else f"class {i}"}  {100 * v:.2f}%')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, RuntimeError) as e:
        sys.exit(f'error: {e}')
