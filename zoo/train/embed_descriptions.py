"""python -m zoo.train.embed_descriptions: encode image descriptions into a GPT4Image embeddings file.

    python -m zoo.train.embed_descriptions --descriptions descriptions.json --data-dir /data/imagenet \\
        --out text_embeddings.safetensors --model ViT-B-32 --pretrained openai

``descriptions.json`` maps each image's path relative to the data root (``train/<class>/<file>``; for the
embedded digits ``digits/<class>/<index>.png``) to its description, written beforehand by a multimodal LLM.
The text encoder is open_clip's (``pip install zoo[text]``): a built-in name with ``--pretrained`` (a tag,
downloaded once, or a weights file), or ``local-dir:DIR`` holding ``open_clip_config.json`` and its weights.
The encoder must have weights: embeddings of a randomly initialised encoder carry no meaning. Embeddings are
L2-normalised and written with the encoder's name and the data root's name (``.safetensors`` or ``.npz``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from .text_align import write_text_embeddings

__all__ = ['read_descriptions', 'load_text_encoder', 'encode_texts', 'main']


class DescriptionError(ValueError):
    """Descriptions or an encoder that cannot be used; the message says what to fix."""


def read_descriptions(path: str | Path, data_dir: str | Path = '') -> dict[str, str]:
    """The ``{relative path: description}`` mapping; with ``data_dir``, every path must name a file there."""
    path = Path(path)
    if not path.is_file():
        raise DescriptionError(f'descriptions file {path} does not exist')
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except json.JSONDecodeError as e:
        raise DescriptionError(f'{path} is not valid JSON: {e}') from e
    if not isinstance(data, dict) or not data:
        raise DescriptionError(f'{path} must hold a non-empty JSON object {{"train/<class>/<file>": "description"}}')
    bad = [k for k, v in data.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise DescriptionError(f'{path}: {len(bad)} entries have no text description, e.g. {bad[:3]}')
    if data_dir:
        root = Path(data_dir)
        missing = [k for k in data if not (root / k).is_file()]
        if missing:
            raise DescriptionError(f'{len(missing)} described images are not files under {root}, e.g. {missing[:3]}; '
                                   f'keys are paths relative to the data root')
    return data


def load_text_encoder(model: str, pretrained: str = '', device: str = 'cpu'):
    """An open_clip model with weights, and its tokenizer."""
    try:
        import open_clip
    except ImportError as e:
        raise DescriptionError('the text encoder needs open_clip: pip install "zoo[text]" '
                               '(or pip install open_clip_torch)') from e
    try:
        encoder = open_clip.create_model(model, pretrained=pretrained or None, device=device,
                                         require_pretrained=True)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        weights = pretrained or '(from the model folder)'
        raise DescriptionError(f'cannot load text encoder {model!r} with weights {weights}: {e}') from e
    return encoder.eval(), open_clip.get_tokenizer(model)


@torch.no_grad()
def encode_texts(encoder, tokenizer, texts: Sequence[str], batch_size: int = 256,
                 device: str = 'cpu') -> torch.Tensor:
    """L2-normalised text embeddings (N, D), in batches."""
    out = [encoder.encode_text(tokenizer(list(texts[i:i + batch_size])).to(device), normalize=True).float().cpu()
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m zoo.train.embed_descriptions', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--descriptions', required=True, help='JSON {"train/<class>/<file>": "description", ...}')
    p.add_argument('--out', required=True, help='embeddings file to write (.safetensors or .npz)')
    p.add_argument('--data-dir', default='', help='data root the keys are relative to (checked when given)')
    p.add_argument('--model', default='ViT-B-32', help='open_clip model name or local-dir:DIR')
    p.add_argument('--pretrained', default='openai', help='open_clip pretrained tag or weights file (built-in names)')
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--device', default='cpu')
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        descriptions = read_descriptions(args.descriptions, args.data_dir)
        pretrained = '' if args.model.startswith(('local-dir:', 'hf-hub:')) else args.pretrained
        encoder, tokenizer = load_text_encoder(args.model, pretrained, args.device)
        keys = sorted(descriptions)
        vectors = encode_texts(encoder, tokenizer, [descriptions[k] for k in keys], args.batch_size, args.device)
        meta = {'encoder': args.model, 'pretrained': pretrained,
                'data': Path(args.data_dir).resolve().name if args.data_dir else ''}
        path = write_text_embeddings(args.out, keys, vectors, meta)
    except (DescriptionError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'{path}: {vectors.shape[0]} text embeddings of width {vectors.shape[1]} ({args.model})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
