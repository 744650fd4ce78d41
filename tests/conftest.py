"""Shared pytest set-up: deterministic, single-process CPU runs sized for a 2-core CI machine."""
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/fidelity.py is importable as `fidelity`

# ZOO_TEST_THREADS: CI runs two pytest processes side by side on its 2 cores and gives each one thread; two
# threads each would oversubscribe the cores, and OpenMP threads waiting at barriers for a descheduled peer
# cost far more than they compute
torch.set_num_threads(int(os.environ.get('ZOO_TEST_THREADS') or max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored after it: for outputs compared with references computed on
    one thread (reduction order), and for graphs of many small ops, where two threads on a shared 2-core
    machine spend more time waiting for each other than computing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
