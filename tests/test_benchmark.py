"""python -m zoo.benchmark: counts, timings, table and JSON output, clear errors."""
import json

import pytest
import timm
import torch

from zoo import benchmark


def test_count_macs_of_a_linear_layer():
    assert benchmark.count_macs(torch.nn.Linear(10, 4), torch.randn(3, 10)) == 3 * 10 * 4


class _ExplicitAttention(torch.nn.Module):
    def forward(self, q):
        return (q @ q.transpose(-1, -2)).softmax(-1) @ q


class _FusedAttention(torch.nn.Module):
    def forward(self, q):
        return torch.nn.functional.scaled_dot_product_attention(q, q, q)


def test_fused_attention_counts_as_its_two_matrix_products():
    # torch 2.14's counter has no formula for the CPU attention kernel: counts must not depend on the torch build
    q = torch.randn(2, 3, 50, 16)
    expected = 2 * 3 * 50 * 50 * 16 * 2
    assert benchmark.count_macs(_ExplicitAttention(), q) == expected
    assert benchmark.count_macs(_FusedAttention(), q) == expected


def test_cli_compares_models_in_one_table(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    results = benchmark.main(['--model', 'ghostnet_050', '--compare', 'ghostnetv3_050:deploy',
                              '--batch-size', '2', '--img-size', '64', '--warmup', '1', '--iters', '2',
                              '--train', '--no-isolate', '--json', str(out)])
    table = capsys.readouterr().out
    assert 'ghostnet_050' in table and 'ghostnetv3_050:deploy' in table and 'infer/s' in table
    saved = json.loads(out.read_text())
    assert [r['model'] for r in saved] == ['ghostnet_050', 'ghostnetv3_050:deploy']
    first = saved[0]
    assert first['input_shape'] == [2, 3, 64, 64]
    assert first['params'] == sum(p.numel() for p in timm.create_model('ghostnet_050').parameters())
    assert first['macs'] > 0 and first['infer_per_s'] > 0 and first['train_per_s'] > 0
    assert results[1]['params'] < benchmark.count_params(timm.create_model('ghostnetv3_050'))


def test_isolated_run_reports_peak_memory(capsys):
    results = benchmark.main(['--model', 'ghostnet_050', '--batch-size', '1', '--img-size', '32',
                              '--warmup', '0', '--iters', '1'])
    assert results[0]['peak_mem_mb'] >= 0 and results[0]['infer_ms'] > 0


def test_unknown_model_is_named_with_suggestions():
    with pytest.raises(ValueError, match='did you mean.*ghostnetv2_100'):
        benchmark.main(['--model', 'ghostnetv2_10'])


def test_input_shape_comes_from_the_pretrained_cfg():
    assert benchmark.resolve_input_shape('ghostnet_100') == (3, 224, 224)
    assert benchmark.resolve_input_shape('ghostnet_100', [128, 96]) == (3, 128, 96)


def test_video_models_get_clips():
    assert benchmark.resolve_input_shape('squeezetime_k400') == (3, 16, 224, 224)
    assert benchmark.resolve_input_shape('squeezetime_k400', [112], num_frames=8) == (3, 8, 112, 112)
    assert benchmark.resolve_input_shape('torchvision:r2plus1d_18', num_frames=16) == (3, 16, 224, 224)


def test_python_file_specs_compare_external_implementations(tmp_path, capsys):
    """An implementation outside the project (e.g. official code) is measured side by side."""
    (tmp_path / 'external.py').write_text(
        'import torch\n\ndef tiny():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())\n')
    spec = f'python:{tmp_path / "external.py"}:tiny'
    results = benchmark.main(['--model', 'ghostnet_050', '--compare', spec, '--batch-size', '1',
                              '--img-size', '32', '--warmup', '0', '--iters', '1', '--no-isolate'])
    assert results[1]['model'] == spec and results[1]['params'] == 3 * 4 * 9 + 4
    with pytest.raises(ValueError, match='no function'):
        benchmark.build_model(f'python:{tmp_path / "external.py"}:missing')
    with pytest.raises(ValueError, match='FILE.py:FUNCTION'):
        benchmark.validate_spec('python:nothing')


def test_rounds_alternate_the_order_and_report_medians(monkeypatch, capsys):
    """--rounds N measures each model N times (fresh runs, order reversed every other round) and reports the
    median per model; peak memory is the largest seen."""
    calls = []
    fake_ms = {'ghostnet_050': iter([30.0, 10.0, 20.0]), 'ghostnet_100': iter([5.0, 7.0, 6.0])}

    def fake(spec, input_shape, batch_size, **kwargs):
        calls.append(spec)
        ms = next(fake_ms[spec])
        return dict(model=spec, input_shape=[batch_size, *input_shape], params=1, macs=1, infer_ms=ms,
                    infer_per_s=batch_size / (ms / 1e3), peak_mem_mb=ms)

    monkeypatch.setattr(benchmark, 'benchmark_model', fake)
    results = benchmark.main(['--model', 'ghostnet_050', '--compare', 'ghostnet_100', '--rounds', '3',
                              '--batch-size', '2', '--img-size', '32', '--no-isolate'])
    assert calls == ['ghostnet_050', 'ghostnet_100', 'ghostnet_100', 'ghostnet_050', 'ghostnet_050', 'ghostnet_100']
    first, second = results
    assert first['infer_ms'] == 20.0 and first['infer_ms_rounds'] == [30.0, 10.0, 20.0]
    assert first['infer_per_s'] == pytest.approx(100.0) and first['peak_mem_mb'] == 30.0
    assert second['infer_ms'] == 6.0
    assert 'median over 3 rounds' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        benchmark.main(['--model', 'ghostnet_050', '--rounds', '0'])


def test_interleaved_timing_takes_turns_and_reverses_every_other_iteration():
    calls = []
    fns = [lambda: calls.append('a'), lambda: calls.append('b'), lambda: calls.append('c')]
    times = benchmark._time_interleaved(fns, warmup=1, iters=2, sync=lambda: None)
    assert ''.join(calls) == 'abc' + 'cba' + 'abc'  # one warm-up turn, then two timed ones
    assert [len(t) for t in times] == [2, 2, 2]


def test_interleave_measures_every_model_in_one_process_per_round(monkeypatch, capsys):
    """--interleave: one call per round with every spec (order reversed every other round), results put back
    in the command line's order; without per-model peak memory."""
    rounds = []

    def fake(specs, input_shape, batch_size, **kwargs):
        rounds.append(list(specs))
        ms = {'ghostnet_050': 10.0 + len(rounds), 'ghostnet_100': 20.0}
        return [dict(model=s, input_shape=[batch_size, *input_shape], params=1, macs=1, infer_ms=ms[s],
                     infer_per_s=batch_size / (ms[s] / 1e3)) for s in specs]

    monkeypatch.setattr(benchmark, 'benchmark_interleaved', fake)
    results = benchmark.main(['--model', 'ghostnet_050', '--compare', 'ghostnet_100', '--rounds', '3',
                              '--batch-size', '2', '--img-size', '32', '--no-isolate', '--interleave'])
    assert rounds == [['ghostnet_050', 'ghostnet_100'], ['ghostnet_100', 'ghostnet_050'],
                      ['ghostnet_050', 'ghostnet_100']]
    first, second = results
    assert first['model'] == 'ghostnet_050' and first['infer_ms_rounds'] == [11.0, 12.0, 13.0]
    assert second['infer_ms'] == 20.0 and 'peak_mem_mb' not in second
    assert 'taking turns' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        benchmark.main(['--model', 'ghostnet_050', '--interleave', '--compile'])


def test_interleaved_benchmark_of_real_models():
    results = benchmark.benchmark_interleaved(['ghostnet_050', 'ghostnetv3_050:deploy'], (3, 64, 64), batch_size=2,
                                              warmup=1, iters=2, train=True)
    assert [r['model'] for r in results] == ['ghostnet_050', 'ghostnetv3_050:deploy']
    assert all(r['infer_ms'] > 0 and r['train_ms'] > 0 and r['macs'] > 0 for r in results)
    assert results[0]['params'] == benchmark.count_params(timm.create_model('ghostnet_050'))
