"""benchmarks/speed_table.py: the A/A control row (``--control``) and the table's ratios, on JSON the test writes."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


_PATH = Path(__file__).resolve().parents[1] / 'benchmarks' / 'speed_table.py'
_spec = importlib.util.spec_from_file_location('speed_table', _PATH)
speed_table = importlib.util.module_from_spec(_spec)
sys.modules['speed_table'] = speed_table  # dataclasses look their module up there
_spec.loader.exec_module(speed_table)


def test_control_times_the_first_model_twice_and_reports_their_ratio():
    c = speed_table.Comparison('m', 'Fam', {'zoo': 'm', 'official': 'python:o.py:m'})
    controlled = speed_table.with_control(c)
    assert list(controlled.specs.items()) == [('zoo', 'm'), ('official', 'python:o.py:m'), ('zoo again', 'm')]
    assert controlled.ratios == (('zoo', 'official'), ('zoo again', 'zoo'))
    assert c.specs == {'zoo': 'm', 'official': 'python:o.py:m'}  # the original is left as it was


def test_table_reports_per_round_throughput_ratios(tmp_path):
    c = speed_table.with_control(speed_table.Comparison('m', 'Fam', {'zoo': 'm', 'official': 'o'}))
    rows = [  # zoo.benchmark's JSON, in command-line order: zoo, official, zoo again
        {'input_shape': [8, 3, 224, 224], 'infer_ms': 10., 'infer_ms_rounds': [10., 10., 12.]},
        {'input_shape': [8, 3, 224, 224], 'infer_ms': 20., 'infer_ms_rounds': [20., 15., 24.]},
        {'input_shape': [8, 3, 224, 224], 'infer_ms': 10., 'infer_ms_rounds': [10., 11., 12.]},
    ]
    path = tmp_path / 'm.json'
    path.write_text(json.dumps(rows))
    lines = speed_table.table([(c, path)], train=False).splitlines()
    assert lines[2] == '| Fam | m | zoo / official | 8x3x224x224 | 2.00x (1.50-2.00) |'
    assert lines[3] == '| Fam | m | zoo again / zoo | 8x3x224x224 | 1.00x (0.91-1.00) |'


def test_unknown_comparison_is_refused(capsys):
    assert speed_table.main(['--only', 'no_such_model', '--control']) == 2
    assert 'nothing matches' in capsys.readouterr().err
