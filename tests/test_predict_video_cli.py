"""python -m zoo.predict_video decodes a clip, samples frames and prints the top classes."""
import numpy as np
import pytest
import timm
import torch

from zoo import predict_video

av = pytest.importorskip('av', reason='PyAV is part of the dev install')


def _write_clip(path, frames=40, size=(48, 64)):
    """A short synthetic mp4: a bright square moving over a dark background."""
    with av.open(str(path), mode='w') as container:
        stream = container.add_stream('mpeg4', rate=10)
        stream.height, stream.width = size
        stream.pix_fmt = 'yuv420p'
        for t in range(frames):
            img = np.full((*size, 3), 20, dtype=np.uint8)
            img[10:26, 2 + t:18 + t] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_sample_indices():
    assert predict_video.sample_indices(100, 16, 4).tolist() == list(range(19, 80, 4))
    short = predict_video.sample_indices(10, 16, 4)
    assert len(short) == 16 and short[0] == 0 and short[-1] == 9


def test_prints_top5_for_a_synthetic_clip(tmp_path, capsys):
    _write_clip(tmp_path / 'clip.mp4')
    clip = predict_video.read_clip(tmp_path / 'clip.mp4', 16, 2, 40, 32, (0.5,) * 3, (0.25,) * 3)
    assert clip.shape == (3, 16, 32, 32)
    assert not torch.equal(clip[:, 0], clip[:, -1])  # frames differ: the square moved

    model = timm.create_model('squeezetime_hmdb51')
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'ckpt.pth')
    (tmp_path / 'labels.txt').write_text('\n'.join(f'action{i}' for i in range(51)))
    assert predict_video.main(['--model', 'squeezetime_hmdb51', '--checkpoint', str(tmp_path / 'ckpt.pth'),
                               '--labels', str(tmp_path / 'labels.txt'), '--img-size', '32',
                               '--frame-interval', '2', str(tmp_path / 'clip.mp4')]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith('top-5 of 51 classes') and len(lines) == 6
    assert all(line.split()[1].startswith('action') for line in lines[1:])


def test_refuses_an_image_model(tmp_path):
    _write_clip(tmp_path / 'clip.mp4', frames=4)
    with pytest.raises(SystemExit):
        predict_video.main(['--model', 'ghostnet_100', str(tmp_path / 'clip.mp4')])
