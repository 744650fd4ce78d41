"""MindSpore TinySAM against the torch model with the same weights: image embedding, masks and IoU predictions for
point / box / mask prompts, the predictor's pre- and post-processing and errors, and both everything modes.

Everything runs at a 64 x 64 model input (a 4 x 4 embedding, 16 x 16 low-res masks): the arithmetic is the one of
the 1024 model, at a cost CI can pay. Weights are perturbed off their initial values (attention biases, norms,
biases) and BatchNorm statistics gathered, so every path carries O(1) signals.
"""
import mindspore as ms
import numpy as np
import pytest
import torch

import zoo
from zoo.mindspore import api, checkpoints
from zoo.mindspore.parity import TOLERANCE, execution_mode, gather_batchnorm_statistics
from zoo.mindspore.tinysam import MindSporeSamMaskGenerator, MindSporeSamPredictor, from_torch_sam
from zoo.mindspore.tinysam import build_tinysam as build_ms_tinysam
from zoo.mindspore.tinysam.export import PromptDecoder, export_sam_mindir
from zoo.mindspore.tinysam.quant import cell_at, from_torch_qsam
from zoo.models.tinysam import SamMaskGenerator, SamPredictor, build_tinysam
from zoo.models.tinysam.quant import default_quant_layers, quantize_modules

IMG = 64


def _rel(expected, actual) -> float:
    expected, actual = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    return float(np.abs(expected - actual).max() / np.abs(expected).max())


def _o1_sam(img_size: int) -> torch.nn.Module:
    """A torch TinySAM at ``img_size`` whose zero / one initialised parameters are perturbed and whose BatchNorm
    statistics are gathered on random images."""
    torch.manual_seed(0)
    sam = build_tinysam(img_size=img_size)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if 'attention_biases' in name or name.endswith('bias') or (name.endswith('weight') and p.ndim == 1):
                p.add_(0.1 * torch.randn_like(p))
    gather_batchnorm_statistics(sam.image_encoder, (img_size, img_size))
    return sam.eval()


@pytest.fixture(scope='module')
def pair():
    sam = _o1_sam(IMG)
    return sam, from_torch_sam(sam)


@pytest.fixture(scope='module')
def embedding(pair):
    sam, twin = pair
    x = np.random.default_rng(1).standard_normal((1, 3, IMG, IMG)).astype(np.float32)
    with torch.no_grad():
        expected, stages = sam.image_encoder.forward_intermediates(torch.from_numpy(x))
        expected = sam.image_encoder.forward_neck(expected)
    got = twin.image_encoder(ms.Tensor(x)).asnumpy()
    got_stages = twin.image_encoder.forward_intermediates(ms.Tensor(x))
    return expected.numpy(), got, [s.numpy() for s in stages], [s.asnumpy() for s in got_stages]


def test_image_embedding_parity(embedding):
    expected, got, stages, got_stages = embedding
    assert 0.1 < np.abs(expected).max() < 100
    assert _rel(expected, got) < TOLERANCE
    for i, (a, b) in enumerate(zip(stages, got_stages)):
        assert _rel(a, b) < TOLERANCE, f'stage {i}'


def test_image_embedding_whole_windows(pair):
    """At 112 x 112 the windows tile stage 2 exactly and stage 4 is one window: the unpadded attention paths."""
    sam, twin = pair
    x = np.random.default_rng(4).standard_normal((1, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        expected = sam.image_encoder(torch.from_numpy(x)).numpy()
    assert _rel(expected, twin.image_encoder(ms.Tensor(x)).asnumpy()) < TOLERANCE


PROMPTS = {
    'points': dict(point_coords=np.array([[[10., 12.], [40., 50.]]], np.float32), point_labels=np.array([[1, 0]])),
    'box': dict(boxes=np.array([[5., 8., 50., 60.]], np.float32)),
    'points+box': dict(point_coords=np.array([[[20., 30.]]], np.float32), point_labels=np.array([[1]]),
                       boxes=np.array([[5., 8., 50., 60.]], np.float32)),
    'batch of 2 points + mask': dict(point_coords=np.array([[[10., 12.]], [[40., 50.]]], np.float32),
                                     point_labels=np.array([[1], [1]]),
                                     mask_input=np.random.default_rng(3).standard_normal((2, 1, 16, 16)).astype(
                                         np.float32)),
}


@pytest.mark.parametrize('multimask', [True, False])
@pytest.mark.parametrize('prompt', list(PROMPTS))
def test_masks_and_iou_parity(pair, embedding, prompt, multimask):
    sam, twin = pair
    emb = embedding[0]
    kwargs = PROMPTS[prompt]
    with torch.no_grad():
        masks, iou = sam.decode(torch.from_numpy(emb), **{k: torch.from_numpy(v) for k, v in kwargs.items()},
                                multimask_output=multimask)
    got_masks, got_iou = twin.decode(ms.Tensor(emb), **{
        k: ms.Tensor(v, ms.int32 if k == 'point_labels' else ms.float32) for k, v in kwargs.items()},
        multimask_output=multimask)
    assert got_masks.shape == masks.shape and got_iou.shape == iou.shape
    assert 0.01 < np.abs(masks.numpy()).max() < 100
    assert _rel(masks.numpy(), got_masks.asnumpy()) < TOLERANCE
    assert np.abs(iou.numpy() - got_iou.asnumpy()).max() < TOLERANCE * max(1.0, np.abs(iou.numpy()).max())


@pytest.fixture(scope='module')
def image():
    return (np.random.default_rng(2).random((48, 60, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope='module')
def predictors(pair, image):
    sam, twin = pair
    expected, got = SamPredictor(sam), MindSporeSamPredictor(twin)
    expected.set_image(image)
    got.set_image(image)
    return expected, got


def test_predictor_embedding(predictors):
    expected, got = predictors
    assert _rel(expected.get_image_embedding().numpy(), got.get_image_embedding().numpy()) < TOLERANCE
    assert got.input_size == expected.input_size and got.original_size == expected.original_size


@pytest.mark.parametrize('prompt', [
    dict(point_coords=np.array([[30, 20], [10, 40]]), point_labels=np.array([1, 0])),
    dict(box=np.array([5, 4, 50, 40])),
    dict(point_coords=np.array([[[30, 20]], [[12, 30]]]), point_labels=np.array([[1], [1]]),
         box=np.array([[5, 4, 50, 40], [0, 0, 30, 30]])),
])
def test_predictor_parity(predictors, prompt):
    expected, got = predictors
    logits, iou, low_res = expected.predict(**prompt, return_logits=True)
    got_logits, got_iou, got_low_res = got.predict(**prompt, return_logits=True)
    assert got_logits.shape == logits.shape and got_logits.shape[-2:] == (48, 60)
    assert _rel(logits, got_logits) < TOLERANCE and _rel(low_res, got_low_res) < TOLERANCE
    assert np.abs(iou - got_iou).max() < TOLERANCE
    masks, got_masks = expected.predict(**prompt)[0], got.predict(**prompt)[0]
    assert got_masks.dtype == bool and (masks != got_masks).mean() < 1e-3


@pytest.mark.parametrize('bad, message', [
    (dict(point_coords=np.array([[70, 10]]), point_labels=np.array([1])), 'lies outside the image'),
    (dict(box=np.array([0, 0, 20, 49])), 'lies outside the image'),
    (dict(), 'no prompt given'),
])
def test_predictor_bad_prompts(predictors, bad, message):
    for predictor in predictors:
        with pytest.raises(ValueError, match=message):
            predictor.predict(**bad)


def test_predictor_bad_image(pair):
    twin = pair[1]
    predictor = MindSporeSamPredictor(twin)
    with pytest.raises(ValueError, match='HxWx3'):
        predictor.set_image(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(RuntimeError, match='set_image'):
        predictor.predict(box=np.array([0, 0, 5, 5]))
    with pytest.raises(ValueError, match='MindSpore TinySam'):
        MindSporeSamPredictor(pair[0])


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@pytest.mark.parametrize('mode', ['generate', 'hierarchical_generate'])
def test_everything_mode_parity(pair, image, mode):
    sam, twin = pair
    # random weights give near-identical masks for every point, so NMS is off (threshold 1) and the IoU filter
    # (predictions of either sign here) decides which masks are kept
    kwargs = dict(points_per_side=4, points_per_batch=16, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                  box_nms_thresh=1.0, high_score_thresh=0.5)
    torch_generator = SamMaskGenerator(sam, **kwargs)
    expected = getattr(torch_generator, mode)(image)
    generator = MindSporeSamMaskGenerator(twin, **kwargs)
    got = getattr(generator, mode)(image)
    assert generator.stats['prompts'] == torch_generator.stats['prompts']
    assert 1 < len(expected) < 3 * torch_generator.stats['prompts'] and len(got) == len(expected)
    for a, b in zip(expected, got):
        assert a['point_coords'] == b['point_coords']
        assert _mask_iou(a['segmentation'], b['segmentation']) > 0.99
        assert abs(a['predicted_iou'] - b['predicted_iou']) < TOLERANCE
        assert abs(a['stability_score'] - b['stability_score']) < 0.01
    if mode == 'hierarchical_generate':
        assert generator.stats['first_pass'] == 1


def test_registered_encoder_converts():
    """``zoo.mindspore.from_torch`` takes the timm-registered encoder (default 1024 build) with its classifier."""
    torch_encoder = zoo.create_model('tinysam_vit_t', num_classes=0)
    cell = api.from_torch(torch_encoder)
    assert cell.num_classes == 0
    torch_names = {k for k in torch_encoder.state_dict() if not k.endswith('num_batches_tracked')}
    assert len(torch_names) == len(list(cell.parameters_and_names()))


def test_ckpt_round_trip(pair, tmp_path):
    twin = pair[1]
    path = tmp_path / 'sam.ckpt'
    checkpoints.write_mindspore_checkpoint(api.parameter_arrays(twin), path)
    fresh = build_ms_tinysam(IMG)
    ms.load_param_into_net(fresh, ms.load_checkpoint(str(path)), strict_load=True)
    for (n, a), (m, b) in zip(twin.parameters_and_names(), fresh.parameters_and_names()):
        assert n == m and np.array_equal(a.asnumpy(), b.asnumpy()), n


def test_prompt_decoder_graph_mode(pair, embedding):
    """The prompt-to-mask decoder with points and a box, compiled in GRAPH mode."""
    sam, twin = pair
    emb = embedding[0]
    coords, labels = np.array([[[20., 30.]]], np.float32), np.array([[1]], np.int32)
    box = np.array([[5., 8., 50., 60.]], np.float32)
    with execution_mode('graph'):
        masks, iou = PromptDecoder(twin, with_box=True)(ms.Tensor(emb), ms.Tensor(coords), ms.Tensor(labels),
                                                         ms.Tensor(box))
    with torch.no_grad():
        expected, expected_iou = sam.decode(torch.from_numpy(emb), torch.from_numpy(coords), torch.from_numpy(labels),
                                            torch.from_numpy(box))
    assert _rel(expected.numpy(), masks.asnumpy()) < TOLERANCE
    assert np.abs(expected_iou.numpy() - iou.asnumpy()).max() < TOLERANCE


def test_mindir_encoder_and_decoder(pair, embedding, tmp_path):
    """Two graphs, loaded back: the encoder's embedding, and the decoder for 1 and 3 points (dynamic axis)."""
    sam, twin = pair
    encoder_path, decoder_path = export_sam_mindir(twin, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['decoder.mindir', 'encoder.mindir']
    x = np.random.default_rng(1).standard_normal((1, 3, IMG, IMG)).astype(np.float32)
    emb = ms.nn.GraphCell(ms.load(str(encoder_path)))(ms.Tensor(x)).asnumpy()
    assert _rel(embedding[0], emb) < TOLERANCE
    decoder = ms.nn.GraphCell(ms.load(str(decoder_path)))
    for n in (1, 3):
        coords = np.random.default_rng(n).random((1, n, 2)).astype(np.float32) * (IMG - 1)
        labels = np.ones((1, n), np.int32)
        masks, iou = decoder(ms.Tensor(embedding[0]), ms.Tensor(coords), ms.Tensor(labels))
        with torch.no_grad():
            expected, expected_iou = sam.decode(torch.from_numpy(embedding[0]), torch.from_numpy(coords),
                                                torch.from_numpy(labels))
        assert _rel(expected.numpy(), masks.asnumpy()) < TOLERANCE
        assert np.abs(expected_iou.numpy() - iou.asnumpy()).max() < TOLERANCE


def _w8a8_scales(sam: torch.nn.Module, layers) -> dict:
    """Calibration-like scales: linear weights per 2 x 2 blocks and inputs per 2 feature chunks, convolution weights
    per output channel and inputs per tensor with an offset."""
    scales = {}
    for name, spec in layers.items():
        w = sam.get_submodule(name).weight.detach()
        if spec.kind.startswith('linear'):
            o, i = w.shape
            blocks = w.reshape(2, o // 2, 2, i // 2).abs().amax((1, 3))
            scales[f'{name}.weight_scale'] = blocks.reshape(2, 1, 2, 1) / 127
            scales[f'{name}.input_scale'] = torch.tensor([[0.04], [0.06]])
        else:
            scales[f'{name}.weight_scale'] = w.abs().amax((1, 2, 3), keepdim=True) / 127
            scales[f'{name}.input_scale'] = torch.tensor(0.05)
            scales[f'{name}.input_offset'] = torch.tensor(0.01)
    return scales


@pytest.fixture(scope='module')
def quantized_pair():
    sam = _o1_sam(IMG)
    layers = default_quant_layers(sam)
    quantize_modules(sam, layers, _w8a8_scales(sam, layers))
    return sam.eval(), from_torch_qsam(sam), layers


def test_w8a8_every_quantized_layer(quantized_pair):
    """Each fake-quantized layer of the twin, fed the input its torch layer saw in a forward pass, gives the torch
    layer's output: the same rounding, clamping and scales (end to end, a rare rounding tie broken differently
    by float noise moves a code by one step, so per-layer is where exactness can be asserted)."""
    sam, twin, layers = quantized_pair
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, (inputs[0].numpy(), output.numpy()))
        return hook

    hooks = [sam.get_submodule(name).register_forward_hook(record(name)) for name in layers]
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 3, IMG, IMG)).astype(np.float32))
    with torch.no_grad():
        sam.decode(sam.image_encoder(x), boxes=torch.tensor([[5., 8., 50., 60.]]))
    for hook in hooks:
        hook.remove()
    assert set(seen) == set(layers)
    for name, (inp, out) in seen.items():
        assert _rel(out, cell_at(twin, name)(ms.Tensor(inp)).asnumpy()) < TOLERANCE, name


def test_w8a8_decoder_parity(quantized_pair, embedding):
    sam, twin, _ = quantized_pair
    emb = embedding[0]
    coords, labels = np.array([[[20., 30.], [40., 10.]]], np.float32), np.array([[1, 0]], np.int32)
    with torch.no_grad():
        masks, iou = sam.decode(torch.from_numpy(emb), torch.from_numpy(coords), torch.from_numpy(labels))
    got_masks, got_iou = twin.decode(ms.Tensor(emb), ms.Tensor(coords), ms.Tensor(labels))
    assert _rel(masks.numpy(), got_masks.asnumpy()) < TOLERANCE
    assert np.abs(iou.numpy() - got_iou.asnumpy()).max() < TOLERANCE


def test_w8a8_conversion_errors(pair, quantized_pair):
    with pytest.raises(ValueError, match='no quantized layers'):
        from_torch_qsam(pair[0])
    with pytest.raises(ValueError, match='Q-TinySAM'):
        from_torch_sam(quantized_pair[0])


def test_sam_command_line_runs_the_twin(pair, image, tmp_path, monkeypatch):
    """``python -m zoo.sam predict --framework mindspore`` draws the same mask as the torch framework from the
    same weights (the model is the small O(1) TinySAM here; the command builds the twin from it)."""
    from PIL import Image

    import zoo.sam as sam_command
    sam, _ = pair
    monkeypatch.setattr(sam_command, 'create_sam', lambda *args, **kwargs: sam)
    encoded_by = []  # which predictor encodes the image: the twin's must, with --framework mindspore
    for cls in (SamPredictor, MindSporeSamPredictor):
        monkeypatch.setattr(cls, 'set_torch_image', (lambda f, c: lambda self, *a: (encoded_by.append(c), f(self, *a)))(
            cls.set_torch_image, cls.__name__))
    Image.fromarray(image).save(tmp_path / 'image.png')
    drawn = {}
    for framework in ('torch', 'mindspore'):
        out = tmp_path / f'{framework}.png'
        assert sam_command.main(['predict', '--image', str(tmp_path / 'image.png'), '--point', '30,20',
                                 '--framework', framework, '--out', str(out)]) == 0
        drawn[framework] = np.asarray(Image.open(out))
    assert encoded_by == ['SamPredictor', 'MindSporeSamPredictor']
    assert np.array_equal(drawn['torch'], drawn['mindspore'])


def test_public_api_takes_the_whole_sam(pair):
    """``zoo.mindspore.from_torch`` takes the object ``zoo.create_sam`` returns; ``create_model('tinysam')`` builds
    the whole SAM; Q-TinySAM by name is refused with the way to build it."""
    import zoo.mindspore
    from zoo.mindspore.tinysam import TinySam
    sam, _ = pair
    twin = zoo.mindspore.from_torch(sam)
    assert isinstance(twin, TinySam) and twin.img_size == sam.image_encoder.img_size
    assert isinstance(zoo.mindspore.create_model('tinysam', img_size=64), TinySam)
    with pytest.raises(ValueError, match='from_torch'):
        zoo.mindspore.create_model('tinysam_w8a8')
