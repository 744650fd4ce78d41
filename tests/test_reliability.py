"""Bad files and bad flags: checkpoints with flipped bytes, empty or truncated files, pickled code, 16-bit
images, and every ``python -m zoo.*`` command fed a table of bad inputs (one line, exit status 2, no traceback)."""
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from zoo import predict_video, sam, segment
from zoo.checkpoint_io import CheckpointError, DIGEST_KEY, classifier_classes, load_checkpoint_file, with_digest
from zoo.command_line import run_command
from zoo.images import ImageReadError, read_image, to_rgb8
from zoo.train.checkpoint import atomic_save


def _flip_tensor_byte(path):
    """Flip one byte inside the first tensor's data entry of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if '/data/' in i.filename and i.file_size > 8)
    data = bytearray(path.read_bytes())
    # stored (uncompressed) entry: the data follows the 30-byte local header, the name and the extra field
    name_len, extra_len = (int.from_bytes(data[info.header_offset + o:info.header_offset + o + 2], 'little')
                           for o in (26, 28))
    data[info.header_offset + 30 + name_len + extra_len + 3] ^= 0x10
    path.write_bytes(bytes(data))


def test_zoo_checkpoints_carry_a_digest_and_a_byte_flip_is_refused(tmp_path):
    path = tmp_path / 'last.pth'
    atomic_save({'model': {'w': torch.arange(64.)}, 'epoch': 3}, path)
    assert DIGEST_KEY in torch.load(path, weights_only=True)
    ckpt = load_checkpoint_file(path)
    assert ckpt['epoch'] == 3 and DIGEST_KEY not in ckpt and torch.equal(ckpt['model']['w'], torch.arange(64.))
    _flip_tensor_byte(path)
    assert torch.load(path, weights_only=True)['epoch'] == 3  # torch itself reads the damaged file silently
    with pytest.raises(CheckpointError, match=rf'{path}.*corrupt'):
        load_checkpoint_file(path)


def test_a_digest_mismatch_is_refused(tmp_path):
    path = tmp_path / 'best.pth'
    saved = with_digest({'model': {'w': torch.ones(4)}})
    saved['model']['w'][0] = 2.  # tensors changed after the digest was taken (CRCs of the archive are fine)
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match='do not match the digest'):
        load_checkpoint_file(path)


def test_third_party_checkpoints_without_digest_load_as_before(tmp_path):
    torch.save({'state_dict': {'fc.weight': torch.zeros(7, 3)}}, tmp_path / 'official.pth')
    assert classifier_classes(tmp_path / 'official.pth', 'fc') == 7
    with pytest.raises(CheckpointError, match='holds no trained classifier head.weight'):
        classifier_classes(tmp_path / 'official.pth', 'head')


def test_empty_truncated_and_pickled_code_files_are_one_clear_error(tmp_path):
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(CheckpointError, match='is empty'):
        load_checkpoint_file(tmp_path / 'empty.pth')
    torch.save({'w': torch.zeros(1000)}, tmp_path / 'full.pth')
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'full.pth').read_bytes()[:2000])
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_checkpoint_file(tmp_path / 'cut.pth')
    torch.save({'w': Image.new('L', (1, 1))}, tmp_path / 'code.pth')
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(tmp_path / 'code.pth')
    assert 'refused' in str(info.value) and 'weights_only' not in str(info.value)
    assert 'PIL.Image.Image' in str(info.value)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 256 * 4).round().astype(np.uint16).reshape(32, 32)
    Image.fromarray(ramp).save(tmp_path / 'ramp16.png')
    assert Image.open(tmp_path / 'ramp16.png').mode.startswith('I')
    clipped = np.asarray(Image.open(tmp_path / 'ramp16.png').convert('RGB'))
    assert (clipped == 255).mean() > 0.9  # what convert('RGB') does
    rgb = np.asarray(read_image(tmp_path / 'ramp16.png'))
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and abs(int(rgb[16, 0, 0]) - 128) <= 1
    assert (rgb == 255).mean() < 0.01
    assert np.asarray(to_rgb8(Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32))))[0, 0, 0] == 128


def test_unreadable_images_are_one_clear_error(tmp_path):
    (tmp_path / 'notes.png').write_text('not an image')
    with pytest.raises(ImageReadError, match='not an image'):
        read_image(tmp_path / 'notes.png')
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / 'full.png')
    (tmp_path / 'cut.png').write_bytes((tmp_path / 'full.png').read_bytes()[:60])
    with pytest.raises(ImageReadError, match='cut.png'):
        read_image(tmp_path / 'cut.png')


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A cgrseg_t checkpoint (150 classes), bad checkpoints, images and a still PNG for the command lines."""
    import timm
    d = tmp_path_factory.mktemp('bad_inputs')
    torch.manual_seed(0)
    torch.save({'state_dict': timm.create_model('cgrseg_t').state_dict()}, d / 'cgrseg_t.pth')
    torch.save({'state_dict': {'fc.weight': torch.zeros(10, 8)}}, d / 'other_model.pth')
    (d / 'empty.pth').write_bytes(b'')
    (d / 'cut.pth').write_bytes((d / 'cgrseg_t.pth').read_bytes()[:4096])
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(d / 'image.png')
    Image.fromarray(np.zeros((1, 320, 3), np.uint8)).save(d / 'strip.png')
    (d / 'notes.png').write_text('not an image')
    return d


SEGMENT = [
    ['--short-side', '0', '{d}/image.png'],
    ['--short-side', '-5', '{d}/image.png'],
    ['--alpha', '1.5', '{d}/image.png'],
    ['--checkpoint', '{d}/empty.pth', '{d}/image.png'],
    ['--checkpoint', '{d}/cut.pth', '{d}/image.png'],
    ['--checkpoint', '{d}/other_model.pth', '{d}/image.png'],
    ['--checkpoint', '{d}/cgrseg_t.pth', '--num-classes', '10', '{d}/image.png'],
    ['--checkpoint', '{d}/cgrseg_t.pth', '{d}/notes.png'],
    ['--checkpoint', '{d}/cgrseg_t.pth', '{d}/strip.png'],
]
PREDICT_VIDEO = [
    ['--frame-interval', '0', '{d}/image.png'],
    ['--topk', '-1', '{d}/image.png'],
    ['--checkpoint', '{d}/empty.pth', '{d}/image.png'],
    ['--checkpoint', '{d}/cut.pth', '{d}/image.png'],
]
SAM = [
    ['--image', '{d}/image.png', '--point', '5,5', '--points-per-side', '0'],
    ['--image', '{d}/image.png', '--point', '5,5', '--checkpoint', '{d}/empty.pth'],
    ['--image', '{d}/image.png', '--point', '5,5', '--checkpoint', '{d}/cut.pth'],
    ['--image', '{d}/notes.png', '--point', '5,5'],
    ['--image', '{d}/image.png', '--point', '500,5'],
    ['--image', '{d}/image.png', '--point', '5,5', '--device', 'nodevice'],
]
CASES = [(segment.main, a) for a in SEGMENT] + [(predict_video.main, a) for a in PREDICT_VIDEO] + \
        [(sam.main, a) for a in SAM]


@pytest.mark.parametrize('main,argv', CASES, ids=[f'{m.__module__}:{" ".join(a)}' for m, a in CASES])
def test_bad_inputs_give_one_line_and_status_2(main, argv, files, capsys):
    argv = [a.format(d=files) for a in argv]
    try:
        code = run_command(main, argv)
    except SystemExit as e:  # argparse's p.error
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and 'Traceback' not in err, err
    assert len([line for line in err.splitlines() if 'error: ' in line]) == 1, err


def test_predict_video_refuses_a_still_image(files):
    with pytest.raises(ValueError, match='still image'):
        predict_video.read_clip(files / 'image.png', 16, 4, 40, 32, (0.5,) * 3, (0.25,) * 3)


def test_segment_takes_the_class_count_of_the_checkpoint(files, monkeypatch):
    """The checkpoint's head decides the classes, with or without a matching --num-classes: timm then loads it
    strictly, instead of dropping it for a random head."""
    built = []

    def record(name, **kwargs):
        built.append(kwargs)
        raise KeyboardInterrupt  # stop before loading: only the arguments matter here

    monkeypatch.setattr(segment, 'create_model', record)
    for extra in ([], ['--num-classes', '150']):
        with pytest.raises(KeyboardInterrupt):
            segment.main(['--checkpoint', str(files / 'cgrseg_t.pth'), str(files / 'image.png'), *extra])
    assert [(k['num_classes'], k['pretrained_cfg_overlay']['num_classes']) for k in built] == [(150, 150)] * 2


@pytest.mark.slow
def test_module_entry_points_exit_2_without_traceback(files):
    """The ``python -m`` wiring (one process for the three commands, each a fresh interpreter)."""
    for module, argv in (('zoo.segment', ['--short-side', '0', str(files / 'image.png')]),
                         ('zoo.sam', ['--image', str(files / 'notes.png'), '--point', '1,1'])):
        run = subprocess.run([sys.executable, '-m', module, *argv], capture_output=True, text=True, timeout=300)
        assert run.returncode == 2 and 'Traceback' not in run.stderr, run.stderr


@pytest.mark.parametrize('name', ['vig_ti_224_gelu', 'ptnt_ti_patch16_192'])
def test_an_empty_batch_is_refused_clearly(name):
    import timm
    model = timm.create_model(name).eval()
    with pytest.raises(ValueError, match='empty batch'):
        model(torch.zeros(0, 3, 192, 192))


def test_mindspore_command_without_mindspore_is_one_line():
    """Without the [mindspore] extra, ``python -m zoo.mindspore`` names the extra in one line, exit status 2
    (the package is imported before its __main__, so this error comes from the package itself)."""
    import importlib.util
    spec = importlib.util.find_spec('mindspore')
    if spec is not None and spec.origin is not None:  # not the tests/mindspore folder
        pytest.skip('MindSpore is installed here')
    run = subprocess.run([sys.executable, '-m', 'zoo.mindspore', 'export', '--model', 'ghostnet_050'],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and 'Traceback' not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines() == [
        'error: zoo.mindspore needs MindSpore: pip install -e ".[mindspore]" (MindSpore 2.10, NumPy 1.x)']
