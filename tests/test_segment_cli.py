"""python -m zoo.segment writes a colour mask PNG over the image."""
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from zoo import segment


def test_palettes():
    ade = segment.class_palette(150)
    assert ade.shape == (150, 3) and ade.dtype == np.uint8
    assert ade[:3].tolist() == [[120, 120, 120], [180, 120, 120], [6, 230, 230]]  # wall, building, sky
    assert ade[-1].tolist() == [92, 0, 255]
    other = segment.class_palette(300)
    assert len({tuple(c) for c in other}) == 300


def test_writes_an_overlay_at_the_image_size(tmp_path, capsys):
    torch.manual_seed(0)
    model = timm.create_model('cgrseg_t', num_classes=150)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'cgrseg_t.pth')
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(tmp_path / 'image.jpg')

    assert segment.main(['--model', 'cgrseg_t', '--checkpoint', str(tmp_path / 'cgrseg_t.pth'),
                         '--short-side', '64', str(tmp_path / 'image.jpg')]) == 0
    out = Image.open(tmp_path / 'image_mask.png')
    assert out.size == (90, 70) and out.mode == 'RGB'
    assert 'largest classes' in capsys.readouterr().out
    # the overlay differs from the image where the mask colours were blended in
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(Image.open(tmp_path / 'image.jpg'), dtype=int)).max() > 0


def test_refuses_a_classification_model(tmp_path):
    Image.new('RGB', (32, 32)).save(tmp_path / 'image.png')
    with pytest.raises(SystemExit):
        segment.main(['--model', 'ghostnet_100', str(tmp_path / 'image.png')])


def test_needs_a_checkpoint_when_nothing_is_released(tmp_path, capsys):
    Image.new('RGB', (32, 32)).save(tmp_path / 'image.png')
    with pytest.raises(SystemExit):
        segment.main(['--model', 'cgrseg_t', str(tmp_path / 'image.png')])
    assert 'no released weights' in capsys.readouterr().err
