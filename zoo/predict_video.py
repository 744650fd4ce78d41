"""``python -m zoo.predict_video``: the top-5 classes of a video clip under a zoo video model.

    python -m zoo.predict_video --model squeezetime_k400 --checkpoint SqueezeTime_K400_71.64.pth clip.mp4

The video is decoded with PyAV, ``num_frames`` frames are sampled (every ``--frame-interval``-th frame
around the middle of the video, as the Kinetics recipes sample; uniformly over the whole video when it
is too short) while decoding, so memory does not grow with the video's length, resized so the short side is ``--short-side``, centre-cropped to the model's input size
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

from .checkpoint_io import load_checkpoint_file
from .command_line import run_command
from .registry import create_model, hub_source, model_info

__all__ = ['sample_indices', 'read_clip', 'main']

#: FFmpeg demuxers of still images (besides the ``*_pipe`` ones: png_pipe, jpeg_pipe, ...)
_IMAGE_FORMATS = ('image2', 'image2pipe')


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
    try:
        frames, idx = _decode_sampled(av, path, num_frames, interval)
    except av.error.FFmpegError as e:
        raise ValueError(f'{path} cannot be decoded as a video ({e}); pass a video file (mp4, avi, webm, ...)') from None
    h, w = next(iter(frames.values())).shape[:2]
    scale = short_side / min(h, w)
    size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    # frame by frame: a float copy of all full-size frames would take 180 MB for 16 frames of 720p
    clip = torch.cat([F.interpolate(torch.from_numpy(frames[i]).permute(2, 0, 1)[None].float() / 255, size=size,
                                    mode='bilinear', align_corners=False) for i in idx])  # T, 3, H, W
    top, left = (clip.shape[-2] - crop) // 2, (clip.shape[-1] - crop) // 2
    clip = clip[..., top:top + crop, left:left + crop]
    clip = (clip - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return clip.permute(1, 0, 2, 3).contiguous()


def _count_frames(av, path: Path) -> int:
    """Frames in the first video stream: the container's count, else one per demuxed packet (no decoding)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f'{path} has no video stream; pass a video file')
        stream = container.streams.video[0]
        if container.format.name in _IMAGE_FORMATS or container.format.name.endswith('_pipe'):
            raise ValueError(f'{path} is a still image ({container.format.name}), not a video; zoo.predict_video '
                             f'classifies clips (use an image model for an image)')
        if stream.frames:
            return stream.frames
        return sum(1 for packet in container.demux(stream) if packet.size)


def _decode_sampled(av, path: Path, num_frames: int, interval: int) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Decode the video once, keeping only the sampled frames (and stopping after the last of them)."""
    available = _count_frames(av, path)
    for _ in range(2):  # a container whose frame count overstates the frames is sampled again with the true count
        if available < 2:
            raise ValueError(f'{path} holds {available} frame{"" if available == 1 else "s"}: a still image or an '
                             f'empty video, not a clip')
        idx = sample_indices(available, num_frames, interval)
        wanted, last, frames, decoded = set(idx.tolist()), int(idx.max()), {}, 0
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                decoded = i + 1
                if i in wanted:
                    frames[i] = frame.to_ndarray(format='rgb24')
                if i >= last:
                    break
        if len(frames) == len(wanted):
            return frames, idx
        available = decoded
    raise ValueError(f'{path}: could not decode the sampled frames (the video is damaged)')


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
    for flag, value in (('--frame-interval', args.frame_interval), ('--img-size', args.img_size),
                        ('--short-side', args.short_side), ('--topk', args.topk)):
        if value is not None and value < 1:
            p.error(f'{flag} {value}: it must be a positive integer')

    info = model_info(args.model)
    if info.task != 'video':
        p.error(f'{args.model} is a {info.task} model; zoo.predict_video needs a video model (e.g. squeezetime_k400)')
    for path, what in ((args.video, 'video'), (args.checkpoint, 'checkpoint'), (args.labels, 'labels file')):
        if path is not None and not path.is_file():
            p.error(f'no {what} at {path}')
    if hub_source(args.model) is not None and args.checkpoint is not None:
        p.error(f'{args.model} brings its own weights; drop --checkpoint')
    if args.checkpoint is not None:
        load_checkpoint_file(args.checkpoint)  # empty, truncated, corrupt or refused: one clear line
    kwargs = {} if args.checkpoint is None else dict(pretrained_cfg_overlay=dict(file=str(args.checkpoint)))
    model = create_model(args.model, pretrained=True, **kwargs).eval()
    names = args.labels.read_text().splitlines() if args.labels else None
    if names is not None and len(names) != model.num_classes:
        p.error(f'{args.labels} has {len(names)} names, the model predicts {model.num_classes} classes; '
                f'pass the labels of its dataset')
    cfg = model.pretrained_cfg
    crop = args.img_size or cfg['input_size'][-1]
    short_side = args.short_side or round(crop / cfg.get('crop_pct', 0.875))
    clip = read_clip(args.video, model.num_frames, args.frame_interval, short_side, crop, cfg['mean'], cfg['std'])
    with torch.no_grad():
        probs = model(clip.unsqueeze(0)).softmax(dim=-1)[0]
    values, indices = probs.topk(min(args.topk, probs.numel()))
    print(f'{args.video}: top-{len(indices)} of {probs.numel()} classes')
    for rank, (v, i) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
        print(f'{rank}. {names[i] if names else f"class {i}"}  {100 * v:.2f}%')
    return 0


if __name__ == '__main__':
    sys.exit(run_command(main))
