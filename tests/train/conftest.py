"""Fixtures of the training-engine tests."""
import pytest

from train_helpers import tiny_config


@pytest.fixture
def tiny(tmp_path):
    """tiny(**overrides) -> a TrainConfig of a few steps writing under tmp_path/run."""
    return lambda **kw: tiny_config(tmp_path, **kw)
