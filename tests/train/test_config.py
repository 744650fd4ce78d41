"""Recipes and the command line: defaults, YAML recipes, flag overrides, refusal of unknown options."""
from dataclasses import fields
from pathlib import Path

import pytest

from zoo.train import ConfigError, TrainConfig, load_recipe, parse_config
from zoo.train.config import build_parser

RECIPES = sorted((Path(__file__).parents[2] / 'configs' / 'train').glob('*.yaml'))


def test_digits_recipe_is_the_default_run():
    """configs/train/digits.yaml writes out exactly what `python train.py` runs."""
    default = TrainConfig()
    for key, value in load_recipe(RECIPES[0].with_name('digits.yaml')).items():
        assert getattr(default, key) == value, key


@pytest.mark.parametrize('recipe', RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads(recipe):
    data = [] if load_recipe(recipe).get('dataset') == 'digits' else ['--data-dir', '/nonexistent']  # embedded set
    cfg = parse_config(['--config', str(recipe), *data])
    assert isinstance(cfg, TrainConfig)


def test_flags_override_recipe(tmp_path):
    recipe = tmp_path / 'r.yaml'
    recipe.write_text('model: ghostnet_100\nepochs: 7\nmodel_ema: true\nofa_stages: [1, 2]\n')
    cfg = parse_config(['-c', str(recipe), '--epochs', '3', '--no-model-ema', '--ofa-stages', '2', '3', '4',
                        '--clip-grad', '1.5'])
    assert (cfg.model, cfg.epochs, cfg.model_ema, cfg.ofa_stages, cfg.clip_grad) == \
        ('ghostnet_100', 3, False, [2, 3, 4], 1.5)
    assert parse_config(['--clip-grad', 'none']).clip_grad is None


def test_every_option_is_a_flag():
    parser = build_parser()
    flags = {a.dest for a in parser._actions}
    assert {f.name for f in fields(TrainConfig)} <= flags


def test_unknown_recipe_key_is_refused(tmp_path):
    recipe = tmp_path / 'r.yaml'
    recipe.write_text('modle: ghostnet_100\n')
    with pytest.raises(ConfigError, match='modle'):
        parse_config(['-c', str(recipe)])


@pytest.mark.parametrize('argv, match', [
    (['--distill', 'kd'], '--teacher'),
    (['--resume', '--overwrite'], 'contradict'),
    (['--dataset', 'folder'], '--data-dir'),
    (['--distill', 'ofa', '--teacher', 'x', '--ofa-stages', '1', '2', '--ofa-eps', '1', '2'], 'ofa_eps'),
])
def test_contradictions_are_refused(argv, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(argv)
