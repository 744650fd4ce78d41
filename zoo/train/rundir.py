"""The run folder: where a run writes, and the rules that nothing there is overwritten by accident and that
one run at a time writes to it (:class:`RunLock`)."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from .config import ConfigError, TrainConfig, run_identity
from .checkpoint import atomic_write_text

__all__ = ['RUN_FILES', 'LOCK_NAME', 'RunLock', 'resolve_output', 'prepare_output', 'write_config']

#: Files a run writes; --overwrite removes exactly these and nothing else.
RUN_FILES = ('config.yaml', 'last.pth', 'best.pth', 'model_deploy.pth', 'metrics.csv', 'metrics.jsonl',
             'curves.png', 'summary.json')


#: The lock file a live run holds in its folder.
LOCK_NAME = '.run.lock'


def _proc_stat(pid: int) -> Optional[list[str]]:
    """The fields of /proc/<pid>/stat after the command name (Linux), None where there is none."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid``, which tells a live process from a reused pid."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def _alive(pid: int, started: Optional[str]) -> bool:
    """Whether ``pid`` is the live process that took the lock (not gone, not a zombie, not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: trust the signal check
    return stat[0] != 'Z' and (started is None or _process_start(pid) == started)


class RunLock:
    """Exclusive right to write a run folder: ``<folder>/.run.lock``, created atomically (``O_CREAT | O_EXCL``),
    holding the owner's pid, host and process start time, removed on release.

    A lock whose process is gone (a killed run on this host) is stale and taken over; a live one, or one held
    from another host (whose process cannot be checked from here), is a :class:`ConfigError` naming the owner.
    A context manager; only rank 0 of a distributed run takes it.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._held = False
        self._made_folder = False

    def _owner(self) -> Optional[dict[str, Any]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or garbage: treated as held, named by its path

    def acquire(self) -> 'RunLock':
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f'--output {self.folder} is a file, not a folder; choose a folder path for the run')
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            self._made_folder = True
        me = {'pid': os.getpid(), 'host': socket.gethostname(), 'started': _process_start(os.getpid()),
              'since': time.strftime('%Y-%m-%d %H:%M:%S')}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    continue  # released meanwhile
                if owner.get('host') == me['host'] and isinstance(owner.get('pid'), int) \
                        and not _alive(owner['pid'], owner.get('started')):
                    self._break(owner)
                    continue
                self._refuse(owner)
            with os.fdopen(fd, 'w') as f:
                f.write(json.dumps(me))
            self._held = True
            return self
        raise ConfigError(f'could not take the run lock {self.path}: other processes keep taking it; retry')

    def _break(self, owner: dict[str, Any]) -> None:
        """Remove a stale lock, unless another process replaced it since it was read."""
        if self._owner() == owner:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def _refuse(self, owner: dict[str, Any]) -> None:
        if owner:
            who = f'process {owner.get("pid")} on {owner.get("host")} (since {owner.get("since")})'
            fix = 'wait for it to finish or stop it' if owner.get('host') == socket.gethostname() else \
                f'if that process is gone, delete {self.path}'
        else:
            who, fix = 'another process', f'wait for it, or delete {self.path} if no run is using the folder'
        raise ConfigError(f'run folder {self.folder} is in use by a live run, {who}; {fix}, '
                          f'or choose another --output')

    def release(self) -> None:
        """Remove the lock file (and the folder, if this lock created it and nothing was written)."""
        if not self._held:
            return
        self._held = False
        if (self._owner() or {}).get('pid') == os.getpid():
            self.path.unlink()
        if self._made_folder:
            try:
                self.folder.rmdir()
            except OSError:
                pass

    def __enter__(self) -> 'RunLock':
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


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
    a folder with no checkpoint, and a resume of a folder that holds a different run. Call it while holding
    the folder's :class:`RunLock`: it deletes the temporary files a killed run left (``.last.pth.*.tmp``, ...).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f'--output {out} is a file, not a folder; choose a folder path for the run')
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
        _remove_stale_temporaries(out)
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
    _remove_stale_temporaries(out)


def _remove_stale_temporaries(out: Path) -> None:
    """Delete what atomic writes of the run's files left behind when a run was killed mid-write."""
    for name in RUN_FILES:
        for tmp in out.glob(f'.{name}.*tmp'):
            tmp.unlink(missing_ok=True)


def write_config(cfg: TrainConfig, out: Path) -> Path:
    path = out / 'config.yaml'
    atomic_write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), path)
    return path
