"""``python -m zoo.mindspore``: export / import round trip, parity, and one clear error for each bad input."""
import pytest
import torch

import zoo
from helpers import command_error as _error
from zoo.mindspore.command_line import main

NAME = 'ghostnet_050'


@pytest.fixture(scope='module')
def torch_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('pt') / 'g.pth'
    torch.save(zoo.create_model(NAME, num_classes=10).state_dict(), path)
    return path


def test_export_import_round_trip(torch_checkpoint, tmp_path, capsys):
    ckpt, back = tmp_path / 'g.ckpt', tmp_path / 'back.pth'
    assert main(['export', '--model', NAME, '--checkpoint', str(torch_checkpoint), '--out', str(ckpt)]) == 0
    assert main(['import', str(ckpt), '--model', NAME, '--out', str(back)]) == 0
    original = torch.load(torch_checkpoint, weights_only=True)
    restored = torch.load(back, weights_only=True)
    assert set(original) == set(restored)
    for k, v in original.items():
        assert k.endswith('num_batches_tracked') or torch.equal(v, restored[k]), k
    assert sorted(p.name for p in tmp_path.iterdir()) == ['back.pth', 'g.ckpt']  # no temporary files left


def test_parity_command(torch_checkpoint, capsys):
    assert main(['parity', '--model', NAME, '--img-size', '64', '64', '--checkpoint', str(torch_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert 'logits' in out and 'stage 4' in out and 'top-5 agree: yes' in out


def test_unknown_model_suggests(tmp_path, capsys):
    assert 'ghostnet_050' in _error(['export', '--model', 'ghostnet_05', '--out', str(tmp_path / 'x.ckpt')], capsys)
    assert not list(tmp_path.iterdir())


def test_checkpoint_of_another_model(tmp_path, capsys):
    path = tmp_path / 'other.pth'
    torch.save(zoo.create_model('ghostnet_100', num_classes=10).state_dict(), path)
    err = _error(['export', '--model', NAME, '--checkpoint', str(path), '--out', str(tmp_path / 'x.ckpt')], capsys)
    assert 'does not fit ghostnet_050' in err and 'of another shape' in err and "conv_stem.weight" in err
    assert [p.name for p in tmp_path.iterdir()] == ['other.pth']


def test_mindspore_checkpoint_of_another_model(torch_checkpoint, tmp_path, capsys):
    ckpt = tmp_path / 'g.ckpt'
    assert main(['export', '--model', NAME, '--checkpoint', str(torch_checkpoint), '--out', str(ckpt)]) == 0
    err = _error(['import', str(ckpt), '--model', 'wavemlp_t', '--out', str(tmp_path / 'w.pth')], capsys)
    assert 'does not fit' in err and 'are not parameters of wavemlp_t' in err and 'blocks.0.0.ghost1' in err
    assert not (tmp_path / 'w.pth').exists()


def test_input_size_the_model_cannot_take(capsys):
    err = _error(['parity', '--model', 'ghostnetv2_100', '--img-size', '16', '16'], capsys)
    assert 'ghostnetv2_100 cannot take a 16x16 input' in err


def test_official_layout_for_a_family_without_port(tmp_path, capsys):
    err = _error(['export', '--model', 'ghostnetv3_050', '--layout', 'official', '--out', str(tmp_path / 'x.ckpt')],
                 capsys)
    assert 'no official MindSpore port' in err and '--layout zoo' in err
    assert not list(tmp_path.iterdir())


def test_unreadable_mindspore_checkpoint(tmp_path, capsys):
    bad = tmp_path / 'bad.ckpt'
    bad.write_bytes(b'not a checkpoint')
    assert 'bad.ckpt' in _error(['import', str(bad), '--model', NAME, '--out', str(tmp_path / 'x.pth')], capsys)


def test_benchmark_command(capsys):
    assert main(['benchmark', '--model', NAME, '--batch-size', '1', '--img-size', '64', '64', '--iters', '1',
                 '--mode', 'pynative']) == 0
    out = capsys.readouterr().out
    assert 'torch' in out and "x torch's time" in out


def test_video_parity_command(capsys):
    """A video model reads clips (N, C, T, H, W); --num-frames sets the clip length of both models."""
    assert main(['parity', '--model', 'squeezetime_k400', '--img-size', '32', '32', '--num-frames', '4']) == 0
    out = capsys.readouterr().out
    assert '4x32x32 clip' in out and 'clip logits' in out and 'stage 4' in out and 'top-5 agree: yes' in out


def test_clip_errors(tmp_path, capsys):
    err = _error(['parity', '--model', 'squeezetime_k400', '--img-size', '16', '16', '--num-frames', '4'], capsys)
    assert 'squeezetime_k400 cannot take a 4x16x16 clip' in err and 'at least 29x29' in err
    err = _error(['export', '--model', 'squeezetime_k400', '--num-frames', '0', '--out', str(tmp_path / 'x.ckpt')],
                 capsys)
    assert '--num-frames must be at least 1' in err
    err = _error(['export', '--model', NAME, '--num-frames', '4', '--out', str(tmp_path / 'x.ckpt')], capsys)
    assert '--num-frames applies to video models only' in err and 'classification' in err
    assert not list(tmp_path.iterdir())


def test_whole_sam_parity_and_two_graph_export(tmp_path, capsys):
    """``tinysam``: parity over the embedding and the masks / IoU predictions of a point and a box prompt;
    ``export --format mindir`` writes the encoder and the prompt-to-mask decoder into the --out folder."""
    assert main(['parity', '--model', 'tinysam', '--img-size', '64', '64']) == 0
    out = capsys.readouterr().out
    for label in ('embedding', 'stage 3', 'points masks', 'points IoU', 'box masks', 'box IoU'):
        assert f'\n{label} ' in out, out
    assert 'top-5' not in out and '(pass,' in out
    folder = tmp_path / 'sam'
    assert main(['export', '--model', 'tinysam', '--img-size', '64', '64', '--format', 'mindir',
                 '--out', str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ['decoder.mindir', 'encoder.mindir']


@pytest.mark.parametrize('argv, message', [
    (['parity', '--model', 'tinysam', '--img-size', '64', '48'], 'square inputs'),
    (['parity', '--model', 'tinysam_w8a8'], 'needs its calibrated checkpoint'),
    (['export', '--model', 'tinysam', '--out', 'x.ckpt', '--layout', 'official'], 'no official MindSpore port'),
])
def test_whole_sam_bad_input(argv, message, capsys):
    assert message in _error(argv, capsys)
