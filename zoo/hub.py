"""``python -m zoo.hub``: Hugging Face Hub folders of zoo models, and their upload.

    python -m zoo.hub save --model ghostnetv2_100 --out hub/ghostnetv2_100                  # the official release
    python -m zoo.hub save --model vig_s_224_gelu --checkpoint vig_s_80.6.pth --out hub/vig_s   # a local checkpoint
    python -m zoo.hub save --model tinysam --checkpoint tinysam_42.3.pth --out hub/tinysam
    python -m zoo.hub push hub/ghostnetv2_100 ORG/ghostnetv2_100.in1k [--private]

A folder holds timm's ``config.json`` (architecture, model_args, pretrained_cfg), ``model.safetensors`` and a
``README.md`` model card whose facts (parameters, MACs, input size, normalisation, paper, license, metrics) are
measured on the model or read from the registry. ``zoo.create_model('hf-hub:ORG/NAME', pretrained=True)`` (or
``'local-dir:PATH'``) loads it back; ``zoo.create_sam`` does the same for TinySAM and Q-TinySAM folders.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import timm
import torch
from huggingface_hub import HfApi, get_token
from safetensors.torch import save_file
from timm.models import load_state_dict, save_for_hf
from torch import nn

from .benchmark import count_macs
from .registry import CONFIG_NAME, WEIGHTS_NAME, HubError, create_model, is_zoo_model, model_info, paper_of
from .models.tinysam import TinySam, create_sam, save_quantized
from .models.tinysam.build_sam import SAM_MODELS, SAM_URLS
from .models.tinysam.modeling.tiny_sam import PIXEL_MEAN, PIXEL_STD
from .models.tinysam.quant.layers import QUANT_LAYERS
from .models.tinysam.quant.quantize import QuantLayer

__all__ = ['save', 'push', 'publish_run', 'main', 'CARD_NAME']

CARD_NAME = 'README.md'
_FOLDER_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
_TASK_TAGS = {'classification': 'image-classification', 'segmentation': 'image-segmentation',
              'video': 'video-classification', 'sam': 'mask-generation'}
PathLike = Union[str, os.PathLike]


def _sam_architecture(model: TinySam) -> str:
    return 'tinysam_w8a8' if _quant_layers(model) else 'tinysam'


def _quant_layers(model: nn.Module) -> dict[str, QuantLayer]:
    """The quantized-layer list of a Q-TinySAM model, read back from its modules (empty for a float model)."""
    kinds = {cls: kind for kind, cls in QUANT_LAYERS.items()}
    return {name: QuantLayer(kinds[type(m)], m.weight_bits, m.input_bits)
            for name, m in model.named_modules() if type(m) in kinds}


def _sam_config(architecture: str, model: TinySam) -> dict[str, Any]:
    """timm's config layout for a whole SAM, so that timm's config reader and the Hub's widgets understand it."""
    encoder_cfg = timm.models.get_pretrained_cfg('tinysam_vit_t').to_dict()  # the registered encoder's facts
    return {
        'architecture': architecture,
        'num_classes': 0,
        'pretrained_cfg': {
            'input_size': [3, model.img_size, model.img_size],
            'mean': [round(v / 255, 6) for v in PIXEL_MEAN], 'std': [round(v / 255, 6) for v in PIXEL_STD],
            'license': encoder_cfg.get('license'),
            'paper_ids': encoder_cfg.get('paper_ids'),
            'origin_url': SAM_URLS[architecture],
        },
    }


def _write_weights_and_config(model: nn.Module, folder: Path) -> tuple[str, dict[str, Any]]:
    """model.safetensors and config.json of ``model``; returns (architecture, config)."""
    if isinstance(model, TinySam):
        architecture = _sam_architecture(model)
        state_dict = model.state_dict()
        if architecture == 'tinysam_w8a8':  # the layer list travels in the file's metadata, as create_sam reads it
            save_quantized(folder / WEIGHTS_NAME, state_dict, _quant_layers(model))
        else:
            save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, folder / WEIGHTS_NAME)
        config = _sam_config(architecture, model)
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding='utf-8')
        return architecture, config
    if not hasattr(model, 'pretrained_cfg'):
        raise HubError(f'a {type(model).__name__} is not a timm / zoo model (no pretrained_cfg): build it with '
                       f'zoo.create_model or timm.create_model')
    save_for_hf(model, str(folder), safe_serialization=True)
    config = json.loads((folder / CONFIG_NAME).read_text(encoding='utf-8'))
    return config['architecture'], config


def _measure(model: nn.Module, input_size: Sequence[int]) -> tuple[int, int, tuple[int, ...]]:
    """(parameters, MACs of one sample, the input shape measured); TinySAM's MACs are its image encoder's."""
    params = sum(p.numel() for p in model.parameters())
    counted = model.image_encoder if isinstance(model, TinySam) else model
    shape = tuple(input_size)
    if getattr(counted, 'num_frames', None):  # video models take (C, T, H, W) clips
        shape = (shape[0], counted.num_frames, *shape[1:])
    device = next(counted.parameters()).device
    return params, count_macs(counted, torch.zeros(1, *shape, device=device)), shape


def _family_and_task(architecture: str) -> tuple[str, str]:
    if architecture in SAM_MODELS:
        return 'tinysam', 'sam'
    if is_zoo_model(architecture):
        info = model_info(architecture)
        return info.family, info.task
    return 'timm', 'classification'


def _official_url(architecture: str, cfg: Mapping[str, Any]) -> str:
    if architecture in SAM_URLS:
        return SAM_URLS[architecture]
    info_url = model_info(architecture).official_url if is_zoo_model(architecture) else ''
    return info_url or cfg.get('url') or ''


def model_card(architecture: str, config: Mapping[str, Any], params: int, macs: int, measured: Sequence[int],
               repo_id: str = '', metrics: Optional[Mapping[str, Any]] = None, weights_from: str = '') -> str:
    """The README.md of a Hub folder: YAML metadata, then the facts measured on the model and read from the
    registry, the run's metrics when there are any, and a usage snippet."""
    cfg = config.get('pretrained_cfg', {})
    family, task = _family_and_task(architecture)
    title, link = paper_of(architecture, dict(cfg))
    license_ = cfg.get('license') or 'other'
    official = _official_url(architecture, cfg)
    target = f'hf-hub:{repo_id}' if repo_id else 'hf-hub:ORG/NAME'
    lines = ['---', f'license: {license_}', 'library_name: timm', f'pipeline_tag: {_TASK_TAGS[task]}', 'tags:',
             f'- {_TASK_TAGS[task]}', '- timm', '- zoo', f'- {family}', '---', '', f'# {repo_id or architecture}', '',
             f'`{architecture}` ({family} family, {task}) from the zoo of efficient vision backbones, in timm\'s '
             f'Hub format (`config.json` + `{WEIGHTS_NAME}`).', '', '## Facts', '',
             f'- **Architecture:** `{architecture}`']
    if title or link:
        lines.append(f'- **Paper:** [{title or link}]({link})' if link else f'- **Paper:** {title}')
    lines += [f'- **License:** {license_}',
              f'- **Parameters:** {params / 1e6:.2f} M',
              f'- **MACs:** {macs / 1e9:.3f} G at {"x".join(map(str, measured))}'
              f'{" (image encoder)" if task == "sam" else ""}',
              f'- **Input size:** {"x".join(map(str, cfg.get("input_size", measured)))}']
    if cfg.get('mean') is not None:
        lines.append(f'- **Normalisation:** mean {tuple(cfg["mean"])}, std {tuple(cfg["std"])} '
                     f'(on 0-1 RGB inputs)')
    if cfg.get('crop_pct') is not None:
        lines.append(f'- **Evaluation crop:** crop_pct {cfg["crop_pct"]}, {cfg.get("interpolation", "bilinear")} '
                     f'interpolation')
    if config.get('num_classes'):
        lines.append(f'- **Classes:** {config["num_classes"]}')
    if weights_from:
        lines.append(f'- **Weights:** {weights_from}')
    if official:
        lines.append(f'- **Official release:** {official}')
    if metrics:
        lines += ['', '## Metrics of the run', '', '| metric | value |', '|---|---|']
        lines += [f'| {k} | {v:.4g} |' if isinstance(v, float) else f'| {k} | {v} |' for k, v in metrics.items()]
    lines += ['', '## Usage', '', '```python', 'import zoo', '']
    if task == 'sam':
        lines += [f"sam = zoo.create_sam('{target}', pretrained=True)",
                  'predictor = zoo.models.tinysam.SamPredictor(sam)']
    else:
        lines += [f"model = zoo.create_model('{target}', pretrained=True).eval()",
                  '# or from a local copy of this folder:',
                  "# model = zoo.create_model('local-dir:PATH', pretrained=True)"]
    lines += ['```', '']
    return '\n'.join(lines)


def save(model: nn.Module, out_dir: PathLike, *, repo_id: str = '', metrics: Optional[Mapping[str, Any]] = None,
         weights_from: str = '', overwrite: bool = False) -> Path:
    """Write a Hub-ready folder for ``model`` (a zoo / timm model, or a TinySAM / Q-TinySAM): ``config.json``,
    ``model.safetensors`` and a ``README.md`` model card.

    The folder is written beside ``out_dir`` under a temporary name and renamed at the end, so an interrupted
    save never leaves a folder that looks complete. ``repo_id`` goes into the card's usage snippet, ``metrics``
    (e.g. a training run's summary) into its metrics table. An existing ``out_dir`` is replaced only with
    ``overwrite``.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise HubError(f'{out} already exists; choose another --out or pass --overwrite to replace it')
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.partial-', dir=out.parent))
    try:
        was_training = model.training
        model.eval()
        try:
            architecture, config = _write_weights_and_config(model, tmp)
            params, macs, measured = _measure(model, config['pretrained_cfg']['input_size'])
        finally:
            model.train(was_training)
        card = model_card(architecture, config, params, macs, measured, repo_id=repo_id, metrics=metrics,
                          weights_from=weights_from)
        (tmp / CARD_NAME).write_text(card, encoding='utf-8')
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f'.{out.name}.old-', dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def _check_folder(folder: Path) -> None:
    missing = [f for f in _FOLDER_FILES if not (folder / f).is_file()]
    if not folder.is_dir() or missing:
        raise HubError(f'{folder} is not a complete Hub folder (missing {", ".join(missing) or "the folder"}); '
                       f'write one with python -m zoo.hub save')


def push(folder: PathLike, repo_id: str, *, private: bool = False, token: Optional[str] = None,
         commit_message: str = 'Upload zoo model') -> str:
    """Upload a folder written by :func:`save` to the Hub repository ``repo_id`` (created if needed, ``private``
    if asked); returns the URL of the commit. Raises :class:`HubError` with one line for what went wrong (no
    token, no network, a refused repository)."""
    from huggingface_hub.errors import HfHubHTTPError, HTTPError  # HTTPError: its HTTP client's, transport included

    folder = Path(folder)
    _check_folder(folder)
    if repo_id.count('/') != 1 or not all(repo_id.split('/')):
        raise HubError(f'{repo_id!r} is not a Hub repository id: write ORG/NAME')
    token = token or get_token()
    if not token:
        raise HubError('no Hugging Face token: log in with `hf auth login` or set HF_TOKEN')
    api = HfApi(token=token, library_name='zoo')
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), commit_message=commit_message)
    except (HfHubHTTPError, OSError) as e:  # OSError covers refused connections and timeouts
        raise HubError(f'could not upload {folder} to {repo_id}: {str(e).splitlines()[0] if str(e) else type(e).__name__}') from None
    return str(getattr(info, 'commit_url', info))


def publish_run(model: nn.Module, folder: PathLike, repo_id: str, *, private: bool = False,
                metrics: Optional[Mapping[str, Any]] = None, weights_from: str = '') -> dict[str, Any]:
    """The end of a ``train.py --push-to-hub`` run: save the Hub folder, upload it. A failed upload keeps the
    folder and prints, in one line, how to upload it later; the run still counts as done."""
    try:
        folder = save(model, folder, repo_id=repo_id, metrics=metrics, weights_from=weights_from, overwrite=True)
    except (ValueError, RuntimeError) as e:  # the run's own checkpoints stay; only the Hub folder is missing
        print(f'hub: could not write the Hub folder ({e}); save it later with python -m zoo.hub save --model '
              f'{getattr(model, "pretrained_cfg", {}).get("architecture", "NAME")} --checkpoint CHECKPOINT '
              f'--out {folder}', flush=True)
        return {'folder': str(folder), 'repo_id': repo_id, 'uploaded': False, 'error': str(e)}
    try:
        url = push(folder, repo_id, private=private)
    except HubError as e:
        print(f'hub: {e}; the folder is kept: upload it later with python -m zoo.hub push {folder} {repo_id}',
              flush=True)
        return {'folder': str(folder), 'repo_id': repo_id, 'uploaded': False, 'error': str(e)}
    print(f'hub: uploaded {folder} to https://huggingface.co/{repo_id} ({url})', flush=True)
    return {'folder': str(folder), 'repo_id': repo_id, 'uploaded': True, 'url': url}


def _num_classes_of(path: Path, name: str) -> Optional[int]:
    """The class count of a checkpoint's classifier when it is stored under the model's classifier name (a zoo
    training run on another dataset); None when the checkpoint does not say (the official layout decides)."""
    cfg = timm.models.get_pretrained_cfg(name.split('.', 1)[0])
    clf = cfg.classifier if cfg is not None else None
    weights = load_state_dict(str(path), weights_only=True)
    for key in ([clf] if isinstance(clf, str) else list(clf or ())):
        if f'{key}.weight' in weights:
            return int(weights[f'{key}.weight'].shape[0])
    return None


def _load_model(name: str, checkpoint: Optional[Path]) -> tuple[nn.Module, str]:
    """(the model with its weights, where they came from): the official release, or a local checkpoint in the
    official or the zoo layout (for TinySAM: tinysam_42.3.pth; Q-TinySAM: tinysam_w8a8.pth or zoo's file)."""
    if name in SAM_MODELS:
        model = create_sam(name, checkpoint=checkpoint, pretrained=checkpoint is None)
        return model, str(checkpoint.name) if checkpoint else SAM_URLS[name]
    if checkpoint is None:
        model = create_model(name, pretrained=True)
        cfg = model.pretrained_cfg
        return model, cfg.get('url') or (f'hf-hub:{cfg["hf_hub_id"]}' if cfg.get('hf_hub_id') else name)
    overlay: dict[str, Any] = dict(file=str(checkpoint))
    num_classes = _num_classes_of(checkpoint, name)
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        overlay['num_classes'] = kwargs['num_classes'] = num_classes
    return create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs), checkpoint.name


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``save`` and ``push``; bad input is one line on stderr and exit status 2."""
    p = argparse.ArgumentParser(prog='python -m zoo.hub', description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='command', required=True)
    s = sub.add_parser('save', help='write a Hub folder (config.json, model.safetensors, README.md)')
    s.add_argument('--model', required=True, help='a zoo / timm model name, tinysam or tinysam_w8a8')
    s.add_argument('--checkpoint', type=Path, help='weights (official or zoo layout; default: the official release)')
    s.add_argument('--out', type=Path, required=True, help='the folder to write')
    s.add_argument('--repo-id', default='', help='ORG/NAME the folder is for (shown in the usage snippet)')
    s.add_argument('--overwrite', action='store_true', help='replace an existing --out folder')
    u = sub.add_parser('push', help='upload a folder written by save')
    u.add_argument('folder', type=Path)
    u.add_argument('repo_id', help='ORG/NAME')
    u.add_argument('--private', action='store_true', help='create the repository private')
    args = p.parse_args(argv)
    try:
        if args.command == 'save':
            if args.checkpoint is not None and not args.checkpoint.is_file():
                raise HubError(f'no checkpoint at {args.checkpoint}')
            if args.out.exists() and not args.overwrite:
                raise HubError(f'{args.out} already exists; choose another --out or pass --overwrite to replace it')
            model, source = _load_model(args.model, args.checkpoint)
            out = save(model, args.out, repo_id=args.repo_id, weights_from=source, overwrite=args.overwrite)
            print(f'wrote {out}/ ({", ".join(_FOLDER_FILES)}); upload it with python -m zoo.hub push {out} '
                  f'{args.repo_id or "ORG/NAME"}')
        else:
            print(f'uploaded: {push(args.folder, args.repo_id, private=args.private)}')
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
