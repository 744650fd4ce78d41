"""The per-epoch metric history: kept in the checkpoint, mirrored to metrics.csv and metrics.jsonl."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from .checkpoint import atomic_write_text

__all__ = ['write_metrics']


def write_metrics(history: Sequence[dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Rewrite metrics.csv and metrics.jsonl from the history (atomically, so a resume never duplicates rows)."""
    out_dir = Path(out_dir)
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in history:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    csv_path, jsonl_path = out_dir / 'metrics.csv', out_dir / 'metrics.jsonl'
    atomic_write_text(buf.getvalue(), csv_path)
    atomic_write_text(''.join(json.dumps(r) + '\n' for r in history), jsonl_path)
    return csv_path, jsonl_path


def _fmt(v: Any) -> Any:
    return f'{v:.6g}' if isinstance(v, float) else v
