"""The run folder: where a run writes, and the rule that nothing there is overwritten by accident."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import yaml

from .config import ConfigError, TrainConfig, run_identity
from .checkpoint import atomic_write_text

__all__ = ['RUN_FILES', 'resolve_output', 'prepare_output', 'write_config']

#: Files a run writes; --overwrite removes exactly these and nothing else.
RUN_FILES = ('config.yaml', 'last.pth', 'best.pth', 'model_deploy.pth', 'metrics.csv', 'metrics.jsonl',
             'curves.png', 'summary.json')


def resolve_output(cfg: TrainConfig, runs_root: str | Path = 'runs') -> Path:
    """--output, or for --resume the newest run under ``runs_root``, or a new ``runs/<time>-<model>-<dataset>``."""
    if cfg.output:
        return Path(cfg.output)
    root = Path(runs_root)
    if cfg.resume or cfg.evaluate:
        runs = sorted((p for p in root.glob('*') if (p / 'last.pth').is_file()), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise ConfigError(f'no run to {"resume" if cfg.resume else "evaluate"} under {root}/; pass --output')
        return runs[-1]
    model = cfg.model.replace(':', '-').replace('/', '-')  # a Hub name (hf-hub:ORG/NAME) as one folder name
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{cfg.dataset}"
    out, n = root / stem, 1
    while out.exists():
        n += 1
        out = root / f'{stem}-{n}'
    return out


def _saved_identity(out: Path) -> Optional[dict]:
    path = out / 'config.yaml'
    if not path.is_file():
        return None
    return run_identity(yaml.safe_load(path.read_text()) or {})


def prepare_output(cfg: TrainConfig, out: Path) -> None:
    """Check the run folder against --resume / --overwrite, and clear it for --overwrite.

    Raises ConfigError for: a folder holding a run (or other files) without --resume/--overwrite, a resume of
    a folder with no checkpoint, and a resume of a folder that holds a different run.
    """
    present = [f for f in RUN_FILES if (out / f).exists()] if out.is_dir() else []
    others = [p.name for p in out.iterdir() if p.name not in RUN_FILES and not p.name.startswith('.')] \
        if out.is_dir() else []
    if cfg.resume:
        if not (out / 'last.pth').is_file():
            raise ConfigError(f'nothing to resume in {out}: it holds no last.pth')
        saved = _saved_identity(out)
        now = run_identity(cfg)
        if saved is not None and saved != now:
            diff = {k: (saved[k], now[k]) for k in now if saved.get(k) != now[k]}
            raise ConfigError(f'{out} holds a different run ({", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())}); '
                              f'choose another --output or pass --overwrite to replace it')
        return
    if present or others:
        if not cfg.overwrite:
            what = 'a run' if present else f'other files ({", ".join(sorted(others)[:3])})'
            raise ConfigError(f'output folder {out} already holds {what}; pass --resume to continue it, '
                              f'--overwrite to start over, or choose another --output')
        if others and not present:
            raise ConfigError(f'output folder {out} holds files that are not a training run '
                              f'({", ".join(sorted(others)[:3])}); choose another --output')
        for f in present:
            (out / f).unlink()
    out.mkdir(parents=True, exist_ok=True)


def write_config(cfg: TrainConfig, out: Path) -> Path:
    path = out / 'config.yaml'
    atomic_write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), path)
    return path
