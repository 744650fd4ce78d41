"""Downstream tests: one intra-op thread.

Detection graphs are many small ops; on a shared 2-core machine two OpenMP threads per op spend more
time waiting for each other than computing (measured: a RetinaNet training step of 0.2 s with one
thread took 3-8 s with two under load). The thread count is restored after each test.
"""
import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
