"""Atomic checkpoint writes and weights_only-safe contents."""
import random

import numpy as np
import torch

from zoo.train.checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state


def test_atomic_save_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / 'c.pth'
    atomic_save({'a': torch.ones(2)}, path)
    atomic_save({'a': torch.zeros(2)}, path)
    assert torch.equal(load_checkpoint(path)['a'], torch.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ['c.pth']


def test_atomic_save_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / 'c.pth'
    atomic_save({'a': torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError('boom')
    try:
        atomic_save({'a': Unpicklable()}, path)
    except RuntimeError:
        pass
    assert torch.equal(load_checkpoint(path)['a'], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ['c.pth']


def test_rng_state_round_trip_through_weights_only(tmp_path):
    state = rng_state()
    atomic_save({'rng': state}, tmp_path / 'r.pth')
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(load_checkpoint(tmp_path / 'r.pth')['rng'])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
