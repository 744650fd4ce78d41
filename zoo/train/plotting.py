"""The training-curve figure: loss (train and validation) and held-out accuracy per epoch, as a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

__all__ = ['plot_history']


def plot_history(history: Sequence[dict[str, Any]], path: str | Path, title: str = '') -> Path:
    """Two panels: losses and top-1 accuracy (%), per epoch. Uses matplotlib's file-only Agg backend."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    path = Path(path)
    epochs = [r['epoch'] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for key, label in (('train_loss', 'train'), ('val_loss', 'held-out')):
        if any(key in r for r in history):
            ax_loss.plot(epochs, [r.get(key) for r in history], marker='o', label=label)
    ax_loss.set(xlabel='epoch', ylabel='loss', title='loss')
    ax_loss.legend()
    for key, label in (('val_top1', 'held-out top-1'), ('val_ema_top1', 'held-out top-1 (EMA)'),
                       ('train_top1', 'train top-1')):
        if any(key in r for r in history):
            ax_acc.plot(epochs, [r.get(key) for r in history], marker='o', label=label)
    ax_acc.set(xlabel='epoch', ylabel='accuracy (%)', title='accuracy', ylim=(0, 100))
    if ax_acc.lines:  # pre-training (FastMIM) scores no accuracy
        ax_acc.legend()
    if title:
        fig.suptitle(title)
    tmp = path.with_name(f'.{path.stem}.tmp.png')
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
