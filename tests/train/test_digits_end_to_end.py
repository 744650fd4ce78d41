"""The main job: `python train.py` with no arguments, end to end on the embedded digits (slow)."""
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


@pytest.mark.slow
def test_default_run_reaches_90_percent_within_5_minutes(tmp_path):
    start, cpu_start = time.time(), _children_cpu()
    done = subprocess.run([sys.executable, str(REPO / 'train.py')], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    wall, cpu = time.time() - start, _children_cpu() - cpu_start
    assert done.returncode == 0, done.stderr[-3000:]
    top1 = float(re.search(r'held-out top-1: ([\d.]+)%', done.stdout).group(1))
    out = Path(re.search(r'outputs in (\S+)/', done.stdout).group(1))
    out = out if out.is_absolute() else tmp_path / out
    summary = json.loads((out / 'summary.json').read_text())
    for name in ('last.pth', 'metrics.csv', 'curves.png'):
        assert (out / name).is_file()
    print(f'default run: {top1:.2f}% held-out top-1; {cpu:.0f} CPU-seconds, {wall:.0f}s wall '
          f'({summary["train_time_s"]:.0f}s training)')
    assert top1 >= 90.
    # "5 minutes on 2 CPU cores", measured in CPU time so that other load on the machine does not decide it
    # (the run uses one intra-op thread, so its CPU time is its wall time on a free core)
    assert cpu < 300.


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
