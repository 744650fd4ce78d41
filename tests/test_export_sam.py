"""zoo.export of TinySAM: an image-encoder file and a prompt-to-mask decoder file (dynamic prompts and points),
each checked against the eager model (the predictor's path) at another batch / number of points than traced.

At 32x32 (a 2x2 image embedding) to keep CI cheap: the decoder graph is the same at every size but for its
constants, and the encoder runs every block of the 1024 model.
"""
from __future__ import annotations

import pytest
import torch

import zoo
import zoo.export_sam as export_sam_module
from zoo.export import REL_TOLERANCE, ExportError, export_model
from zoo.export_sam import (SamDecoderGraph, build_sam_for_export, decoder_inputs, encoder_inputs, export_sam)
from zoo.random_statistics import gather_batchnorm_statistics

SIZE = 32


@pytest.fixture(scope='module')
def sam():
    """Float TinySAM at SIZE, BatchNorm statistics gathered on random images (O(1) embeddings)."""
    torch.manual_seed(0)
    model = build_sam_for_export('tinysam', img_size=SIZE)
    gather_batchnorm_statistics(model.image_encoder, lambda: torch.randn(4, 3, SIZE, SIZE))
    return model.eval()


@pytest.fixture(scope='module')
def sam_w8a8(sam):
    """Q-TinySAM with the float model's weights and range-based scales: max |weight| / 127 per layer, and the
    largest input the float layer sees on random prompts / 127 (placeholder scales of 1 round everything to 0)."""
    quant = build_sam_for_export('tinysam_w8a8', img_size=SIZE)
    quant.load_state_dict(sam.state_dict(), strict=False)  # the float weights; scales stay
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: seen.__setitem__(n, args[0].abs().max().item()))
             for n, m in sam.named_modules() if hasattr(quant.get_submodule(n), 'weight_scale')]
    with torch.no_grad():
        sam.image_encoder(*encoder_inputs(sam, 2, seed=5))
        SamDecoderGraph(sam)(*decoder_inputs(sam, 2, 3, seed=5, has_mask=True))
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for n, m in quant.named_modules():
            if hasattr(m, 'weight_scale'):
                m.weight_scale.fill_(m.weight.abs().max().item() / 127)
                if hasattr(m, 'input_scale'):
                    m.input_scale.fill_(seen[n] / 127)
    return quant.eval()


def _assert_o1(model, report):
    with torch.no_grad():
        embedding = model.image_encoder(*encoder_inputs(model, 1, seed=3))
        masks = SamDecoderGraph(model)(*decoder_inputs(model, 2, 3, seed=3))[0]
    for t in (embedding, masks):
        assert 0.05 < t.abs().max().item() < 1e3, 'outputs this size hide wrong graphs'


@pytest.mark.parametrize('fmt', ['onnx', 'torch-export'])
def test_float_round_trip(sam, fmt, tmp_path, one_thread):
    report = export_model(sam, tmp_path / 'sam', fmt, dynamic_batch=True)
    suffix = '.onnx' if fmt == 'onnx' else '.pt2'
    assert sorted(p.name for p in tmp_path.iterdir()) == [f'sam_decoder{suffix}', f'sam_encoder{suffix}']
    assert report.encoder.path == tmp_path / f'sam_encoder{suffix}'
    assert report.encoder.input_shape[0] == 2 and report.encoder.checked_batch == 3
    assert report.decoder.input_shape == (2, 3, 2) and report.decoder.checked_batch == 3  # checked at 3 x 5
    assert [c.name for c in report.decoder.checks] == ['masks', 'iou_predictions', 'low_res_masks']
    assert report.max_rel < 1e-4
    _assert_o1(sam, report)


@pytest.mark.slow  # torch.export traces for 30-150 s whatever the input size
def test_w8a8_round_trip(sam_w8a8, tmp_path, one_thread):
    """Q-TinySAM through torch.export reproduces the fake-quantized model exactly."""
    report = export_model(sam_w8a8, tmp_path / 'q.pt2', 'torch-export', name='tinysam_w8a8')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['q_decoder.pt2', 'q_encoder.pt2']
    assert report.max_rel == 0
    _assert_o1(sam_w8a8, report)


@pytest.mark.slow
def test_w8a8_onnx_is_kept_only_when_it_agrees(sam_w8a8, tmp_path, one_thread):
    """Q-TinySAM's fake quantisation rounds to the nearest step, so a value on a half step flips with any reordering
    of the float arithmetic before it, and the flip spreads: onnxruntime on one thread agrees with eager, on two
    threads whole stages differ (35% mean). The check decides either way; never a silent wrong file."""
    try:
        report = export_model(sam_w8a8, tmp_path / 'q.onnx', 'onnx', name='tinysam_w8a8')
    except ExportError as e:
        assert 'differs from the eager model' in str(e)
        assert not list(tmp_path.iterdir())
    else:
        for part in (report.encoder, report.decoder):
            assert part.max_rel <= REL_TOLERANCE or part.max_rel <= 2 * part.float32_noise
        assert sorted(p.name for p in tmp_path.iterdir()) == ['q_decoder.onnx', 'q_encoder.onnx']


def test_decoder_graph_is_the_prompt_encoders_arithmetic(sam):
    """Boxes (labels 2, 3) and mask inputs through the one graph give the predictor's path bit for bit."""
    emb, coords, _, mask, _, orig = decoder_inputs(sam, 2, 2, seed=4, orig_size=(45, 70))
    box = torch.cat([coords.amin(1), coords.amax(1)], dim=1)  # x0, y0, x1, y1
    corners = box.reshape(2, 2, 2)
    labels = torch.tensor([[2., 3.]]).expand(2, 2)
    graph = SamDecoderGraph(sam)
    resized = export_sam_module._resized_size((45, 70), SIZE)
    with torch.no_grad():
        for has_mask in (0., 1.):
            got = graph(emb, corners, labels, mask, torch.tensor([has_mask]), orig)
            low, iou = sam.decode(emb, boxes=box, mask_input=mask if has_mask else None)
            want = sam.postprocess_masks(low, resized, (45, 70)), iou, low
            for g, w in zip(got, want):
                assert torch.equal(g, w)


def test_failed_check_leaves_neither_file(sam, tmp_path, monkeypatch):
    real = export_sam_module._run_onnx

    def wrong_decoder(path, inputs):
        outputs = real(path, inputs)
        return [t + 1 for t in outputs] if 'decoder' in path.name else outputs

    monkeypatch.setattr(export_sam_module, '_run_onnx', wrong_decoder)
    with pytest.raises(ExportError, match=r"tinysam \(decoder\) differs from the eager model: \w+: max abs diff 1"):
        export_sam(sam, tmp_path, 'onnx')
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('args, message', [
    (['--img-size', '32', '48'], 'square'),
    (['--img-size', '40', '40'], 'multiples of 16'),
    (['--deploy'], 'no deploy form'),
    (['--out', '{tmp}/missing/sam'], 'does not exist'),
])
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    args = ['--model', 'tinysam'] + [a.replace('{tmp}', str(tmp_path)) for a in args]
    if '--out' not in args:
        args += ['--out', str(tmp_path / 'sam')]
    assert zoo.command_line.run_command(zoo.export.main, args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err and err.count('\n') == 1
    assert list(tmp_path.iterdir()) == []
