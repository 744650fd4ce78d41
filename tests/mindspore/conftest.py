"""The MindSpore tests run only where the ``[mindspore]`` extra is installed; elsewhere the folder is skipped (and
the report header says so)."""
import importlib.util
import os
import sys
from pathlib import Path

# tests/ is on sys.path, so without MindSpore this very folder would pass for a (namespace) package 'mindspore'
_SPEC = importlib.util.find_spec('mindspore')
_HAVE_MINDSPORE = _SPEC is not None and _SPEC.origin is not None
collect_ignore_glob = [] if _HAVE_MINDSPORE else ['test_*.py']

sys.path.insert(0, str(Path(__file__).parent))  # tests/mindspore/helpers.py is importable as `helpers`

if _HAVE_MINDSPORE and os.environ.get('ZOO_TEST_THREADS'):
    import mindspore  # MindSpore's CPU kernels have their own thread pool (tests/conftest.py says why one thread)
    mindspore.device_context.cpu.op_tuning.threads_num(int(os.environ['ZOO_TEST_THREADS']))


def pytest_report_header(config):
    if not _HAVE_MINDSPORE:
        return 'tests/mindspore: skipped, MindSpore is not installed (pip install -e ".[mindspore]")'
