"""Downstream tests: one intra-op thread.

Detection graphs are many small ops; on a shared 2-core machine two OpenMP threads per op spend more
time waiting for each other than computing (measured: a RetinaNet training step of 0.2 s with one
thread took 3-8 s with two under load). The thread count is restored after each test.
"""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
