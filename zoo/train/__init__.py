"""zoo's training engine: supervised training and distillation (KD, OFA-KD, the GhostNetV3 recipe), FastMIM
masked-image pre-training and GPT4Image text-embedding alignment (``--paradigm``).

``python train.py`` (the command line over :func:`main`) with no arguments trains a GhostNet on scikit-learn's
digits. Recipes live in ``configs/train/*.yaml``; every option of :class:`TrainConfig` is a flag.
"""
from .config import ConfigError, TrainConfig, load_recipe, make_config, parse_config
from .data import CorruptImageError, DataError
from .run import evaluate, main, train

__all__ = ['ConfigError', 'CorruptImageError', 'DataError', 'TrainConfig', 'evaluate', 'load_recipe',
           'main', 'make_config', 'parse_config', 'train']
