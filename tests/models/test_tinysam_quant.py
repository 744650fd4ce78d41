"""Q-TinySAM: the official W8A8 release's layout converts without running its pickle, and the fake-quantized
layers compute what the official quantized layers compute (fixture tinysam_w8a8.json, from the official code).

The release is ``torch.save`` of the whole quantized model. The tests write such a file themselves: a module tree
in the official layout whose classes carry the official import paths (``quantization_layer.layers.InferQuant*``,
``tinysam.modeling.*``), filled with the fixture's deterministic weights and quantization parameters.
"""
from __future__ import annotations

import importlib
import os
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from fidelity import deterministic_state_dict, load_fixture, make_input, tensor_from_record
from zoo.models.tinysam import (SamPredictor, build_tinysam, build_tinysam_w8a8, create_sam, default_quant_layers,
                                load_quantized, quantize_modules, save_quantized)
from zoo.models.tinysam.quant.convert import convert_w8a8_checkpoint
from zoo.models.tinysam.quant.layers import (GELU_MIN, PostGeluQuantLinear, QuantConv2d, QuantConvTranspose2d,
                                             QuantLinear)
from zoo.models.tinysam.quant.quantize import QuantLayer
from zoo.models.tinysam.utils.layout import to_zoo_name
from zoo.sam import main as sam_main

OFFICIAL_CLASSES = {'linear': 'InferQuantLinear', 'post': 'InferQuantLinearPost', 'conv': 'InferQuantConv2d',
                    'convT': 'InferQuantConvTranspose2d'}
MATMUL_PATH = 'mask_decoder.transformer.layers.0.self_attn.matmul1'
BUFFER_LEAVES = ('running_mean', 'running_var', 'num_batches_tracked', 'positional_encoding_gaussian_matrix')


# ---------------------------------------------------------------- a release-like pickle, written here

def _importable_class(module: str, name: str, patch: pytest.MonkeyPatch) -> type:
    """A plain class that pickle stores as ``module.name`` (the module and its parents exist while patched)."""
    parts = module.split('.')
    for i in range(1, len(parts) + 1):
        mod_name = '.'.join(parts[:i])
        if mod_name not in sys.modules:
            patch.setitem(sys.modules, mod_name, types.ModuleType(mod_name))
    cls = type(name, (), {'__module__': module, '__qualname__': name})
    patch.setattr(sys.modules[module], name, cls, raising=False)
    return cls


def _node(cls: type, **attrs) -> object:
    """An object whose pickled state is a torch module's ``__dict__``."""
    obj = cls()
    obj.__dict__.update(training=False, _parameters=OrderedDict(), _buffers=OrderedDict(),
                        _non_persistent_buffers_set=set(), _modules=OrderedDict(), **attrs)
    return obj


def _official_quant_node(record: dict, weight: torch.Tensor, bias, classes: dict) -> object:
    kind = record['kind']
    qw, qa = 2 ** (record['w_bit'] - 1), 2 ** (record['a_bit'] - 1)
    attrs = dict(mode=record['mode'], w_bit=record['w_bit'], a_bit=record['a_bit'], w_qmax=qw, a_qmax=qa)
    if kind in ('linear', 'post'):
        out_f, in_f = weight.shape
        attrs.update(in_features=in_f, out_features=out_f, bias_correction=False)
    else:
        attrs.update(in_channels=weight.shape[0 if kind == 'convT' else 1], kernel_size=tuple(weight.shape[2:]),
                     padding_mode='zeros')
    node = _node(classes[kind], **attrs)
    node._parameters.update(weight=nn.Parameter(weight), bias=None if bias is None else nn.Parameter(bias))
    buffers = {k: tensor_from_record(record[k]) for k in ('w_interval', 'a_interval', 'a_bias') if k in record}
    if kind in ('linear', 'post'):
        n_v, n_h, n_a = record['n_V'], record['n_H'], record['n_a']
        counts = dict(n_V=n_v, n_H=n_h, n_a=n_a, crb_rows=out_f // n_v, crb_cols=in_f // n_h, crb_acts=in_f // n_a)
        buffers.update({k: torch.tensor(v, dtype=torch.int32) for k, v in counts.items()})
        if kind == 'post':
            buffers['a_neg_interval'] = torch.tensor(GELU_MIN / qa)
    else:
        buffers.update(n_V=torch.tensor(1, dtype=torch.int32), n_H=torch.tensor(1, dtype=torch.int32))
    node._buffers.update(buffers)
    return node


def write_release_like(file, state_dict: dict, layers: dict, patch: pytest.MonkeyPatch, extra=None) -> None:
    """``torch.save`` of a whole module tree in the official Q-TinySAM layout (``extra``: path -> object)."""
    classes = {k: _importable_class('quantization_layer.layers', v, patch) for k, v in OFFICIAL_CLASSES.items()}
    block = _importable_class('tinysam.modeling.common', 'Block', patch)
    root = _node(_importable_class('tinysam.modeling.sam', 'Sam', patch), image_format='RGB', mask_threshold=0.0)
    root._buffers['pixel_mean'] = torch.zeros(3, 1, 1)  # non-persistent in the official Sam
    root._non_persistent_buffers_set.add('pixel_mean')
    nodes = {'': root}

    def node_at(path: str) -> object:
        if path not in nodes:
            parent, _, child = path.rpartition('.')
            if path in layers:
                rec = layers[path]
                nodes[path] = _official_quant_node(rec, state_dict[f'{path}.weight'], state_dict.get(f'{path}.bias'),
                                                   classes)
            else:
                nodes[path] = _node(block)
            node_at(parent)._modules[child] = nodes[path]
        return nodes[path]

    for key, value in state_dict.items():
        path, _, leaf = key.rpartition('.')
        node = node_at(path)
        if path in layers:
            continue
        if leaf in BUFFER_LEAVES:
            node._buffers[leaf] = value
        else:
            node._parameters[leaf] = nn.Parameter(value, requires_grad=False) if value.is_floating_point() else value
    for path, obj in (extra or {}).items():
        parent, _, child = path.rpartition('.')
        node_at(parent)._modules[child] = obj
    torch.save(root, file)


class Payload:
    """Unpickling this runs ``code`` (if the unpickler lets it)."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


@pytest.fixture(scope='module')
def official():
    return load_fixture('tinysam_w8a8')


@pytest.fixture(scope='module')
def float_sd():
    base = load_fixture('tinysam_vit_t')
    return deterministic_state_dict(base['state_dict'], base['weights_seed'])


@pytest.fixture(scope='module')
def release(official, float_sd, tmp_path_factory):
    """The official layout of Q-TinySAM with the fixture's weights and quantization parameters, as released."""
    path = tmp_path_factory.mktemp('w8a8') / 'tinysam_w8a8.pth'
    with pytest.MonkeyPatch.context() as patch:
        matmul_cls = _importable_class('quantization_layer.layers', 'InferQuantMatMul', patch)
        matmul = _node(matmul_cls, mode='quant_forward', A_bit=8, B_bit=8, A_qmax=128, B_qmax=128)
        matmul._buffers.update(A_interval=torch.tensor(0.1), B_interval=torch.tensor(0.1))
        write_release_like(path, float_sd, official['layers'], patch, extra={MATMUL_PATH: matmul})
    return path


@pytest.fixture(scope='module')
def converted(release):
    return convert_w8a8_checkpoint(release)


@pytest.fixture(scope='module')
def qsam(release):
    return create_sam('tinysam_w8a8', checkpoint=release)


# ---------------------------------------------------------------- conversion

def test_release_layout_converts(converted, official):
    expected_quant = {to_zoo_name(k) for k, r in official['layers'].items() if r['mode'] == 'quant_forward'}
    assert set(converted.layers) == expected_quant and len(expected_quant) == 117
    kinds = {'linear': 'linear', 'post': 'linear_post_gelu', 'conv': 'conv2d', 'convT': 'conv_transpose2d'}
    for path, rec in official['layers'].items():
        if rec['mode'] == 'quant_forward':
            assert converted.layers[to_zoo_name(path)].kind == kinds[rec['kind']]
    assert converted.layers['image_encoder.patch_embed.conv1.conv'] == QuantLayer('conv2d', 8, 32)
    assert converted.layers['mask_decoder.output_hypernetworks_mlps.0.layers.0'] == QuantLayer('linear', 6, 6)
    assert converted.float_layers == ['mask_decoder.iou_prediction_head.layers.2']
    assert converted.dropped_matmuls == [MATMUL_PATH]
    assert 'pixel_mean' not in converted.state_dict  # non-persistent in the pickled module
    assert converted.state_dict['image_encoder.layers.1.blocks.0.attn.qkv.weight_scale'].shape == (3, 1, 1, 1)
    assert converted.state_dict['image_encoder.layers.1.blocks.0.mlp.fc1.input_scale'].shape == (2, 1)
    assert 'W6A6' in converted.summary() and 'never calls them' in converted.summary()


def test_release_and_converted_file_load_the_same(release, qsam, tmp_path):
    out = tmp_path / 'w8a8_zoo.safetensors'
    assert sam_main(['convert-w8a8', str(release), str(out)]) == 0
    again = create_sam('tinysam_w8a8', checkpoint=out)
    ref = qsam.state_dict()
    assert again.state_dict().keys() == ref.keys()
    assert all(torch.equal(again.state_dict()[k], ref[k]) for k in ref)
    assert isinstance(qsam.image_encoder.layers[1].blocks[0].mlp.fc2, PostGeluQuantLinear)
    assert type(qsam.mask_decoder.iou_prediction_head.layers[2]) is nn.Linear  # raw mode: float, as official


def test_unpickling_runs_no_code(tmp_path, float_sd, official):
    flag = tmp_path / 'ran'
    code = f'open({str(flag)!r}, "w").close()'
    whole = tmp_path / 'payload.pth'
    torch.save(Payload(code), whole)
    with pytest.raises(ValueError, match='not a pickled torch module'):
        convert_w8a8_checkpoint(whole)
    with pytest.MonkeyPatch.context() as patch:  # hidden inside the module tree, as a submodule
        inside = tmp_path / 'inside.pth'
        write_release_like(inside, float_sd, official['layers'], patch, extra={'mask_decoder.evil': Payload(code)})
    with pytest.raises(ValueError, match='mask_decoder.evil is not a pickled torch module'):
        convert_w8a8_checkpoint(inside)
    blocked = tmp_path / 'system.pth'
    torch.save(type('P', (), {'__reduce__': lambda self: (os.system, (f'touch {flag}',))})(), blocked)
    with pytest.raises(ValueError, match='refused'):
        convert_w8a8_checkpoint(blocked)
    assert not flag.exists()


def test_pretrained_fetches_the_release(release, qsam, monkeypatch):
    """pretrained=True asks timm's download cache for the W8A8 release URL (answered with the test's file) and
    reads the file it returns through the converter."""
    module = importlib.import_module('zoo.models.tinysam.build_sam')
    asked = []
    monkeypatch.setattr(module, 'download_cached_file', lambda url, **kwargs: asked.append(url) or str(release))
    model = create_sam('tinysam_w8a8', pretrained=True)
    assert asked == ['https://github.com/xinghaochen/TinySAM/releases/download/2.0/tinysam_w8a8.pth']
    ref = qsam.state_dict()
    assert model.state_dict().keys() == ref.keys()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_hub_entry_loads_the_release(release):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    model = torch.hub.load(repo, 'tinysam_w8a8', source='local', checkpoint=release)
    assert isinstance(model.image_encoder.layers[1].blocks[0].mlp.fc2, PostGeluQuantLinear) and not model.training


def test_wrong_files_are_refused(tmp_path, float_sd, qsam):
    plain = tmp_path / 'tinysam_42.3.pth'
    torch.save(float_sd, plain)
    with pytest.raises(ValueError, match='plain state dict'):
        create_sam('tinysam_w8a8', checkpoint=plain)
    other = tmp_path / 'module.pth'
    torch.save(nn.Sequential(nn.Linear(2, 2)), other)
    with pytest.raises(ValueError, match='without quantized layers'):
        create_sam('tinysam_w8a8', checkpoint=other)
    junk = tmp_path / 'junk.safetensors'
    junk.write_bytes(b'\x00' * 64)
    with pytest.raises(ValueError, match='not a safetensors file'):
        create_sam('tinysam_w8a8', checkpoint=junk)
    with pytest.raises(FileNotFoundError):
        create_sam('tinysam_w8a8', checkpoint=tmp_path / 'missing.pth')
    with pytest.raises(ValueError, match='from a file'):
        create_sam('tinysam_w8a8', checkpoint=float_sd)
    with pytest.raises(ValueError, match='Q-TinySAM checkpoint'):  # quantized weights into float TinySAM
        create_sam('tinysam', checkpoint=qsam.state_dict())
    with pytest.raises(ValueError, match='tinysam_w8a8'):  # the pickled release into float TinySAM
        create_sam('tinysam', checkpoint=other)


# ---------------------------------------------------------------- arithmetic: the official layers' outputs

def _rounding_flip_bound(layer: nn.Module) -> float:
    """The most one output can move when an input on a rounding boundary lands one quantization step away
    (two such inputs under one output): 2 x the largest input step x the largest quantized weight."""
    steps = [b.abs().max() for n, b in layer.named_buffers() if n.startswith('input') and n.endswith('scale')]
    if not steps:
        return 0.
    return 2 * max(steps).item() * layer.quantized_weight().abs().max().item()


def test_layers_reproduce_official_outputs(official, qsam):
    """Each probed layer, fed the fixture's input, gives the official quantized layer's output.

    Within what the arithmetic allows across torch builds: float32 accumulation in another order (relative to
    the output's scale, e.g. 5.5e-6 on outputs up to 3.7 for the 2304-term sums of ``neck.2`` under torch 2.14),
    and on at most 1% of the elements an input that sits on a rounding boundary and rounds the other way."""
    for path, rec in official['layer_outputs'].items():
        spec = rec['input']
        x = make_input(spec['shape'], spec['seed']) * spec['scale'] + spec['offset']
        layer = qsam.get_submodule(to_zoo_name(path))
        with torch.no_grad():
            y = layer(x)
        assert list(y.shape) == rec['output_shape'], path
        head = torch.tensor(rec['output_head'], dtype=torch.float32)
        gap = (y.flatten()[:512] - head).abs()
        off = gap > 1e-5 * head.abs() + 1e-5 * head.abs().max()
        assert off.sum() <= 0.01 * head.numel(), (path, off.sum().item())
        assert (gap[off] <= _rounding_flip_bound(layer)).all(), (path, gap.max().item())
        assert abs(y.double().sum().item() - rec['output_sum']) <= 1e-5 * y.double().abs().sum().item(), path


def _spread(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    d = (a - b).abs().flatten()
    return d.median().item(), d.quantile(0.99).item(), d.max().item()


def test_decoder_matches_official_w8a8(official, qsam):
    """Prompt encoder + quantized mask decoder on the fixture embedding. 8-bit rounding turns float noise into
    whole steps, so values are compared by their spread: the box prompts take the same path bit for bit; the
    point / mask prompts' positional encodings differ from the official ones by ~1e-7, which flips a few
    roundings. Quantizing changes these masks by a median 0.08 - 0.12 (max 0.33 - 0.46)."""
    dec = load_fixture('tinysam_vit_t')['decoder']
    emb = make_input(dec['embedding_input']['shape'], dec['embedding_input']['seed'])
    mask_in = make_input(dec['mask_input']['shape'], dec['mask_input']['seed'])
    prompts = {
        'points': ((torch.tensor([[[100., 200.], [700., 650.]], [[512., 512.], [30., 1000.]]]),
                    torch.tensor([[1, 0], [1, 1]])), None, None),
        'boxes': (None, torch.tensor([[50., 60., 500., 700.], [300., 100., 900., 400.]]), None),
        'points_box_mask': ((torch.tensor([[[400., 300.]]]), torch.tensor([[1]])),
                            torch.tensor([[200., 150., 800., 600.]]), mask_in),
    }
    for case, (points, boxes, masks_in) in prompts.items():
        with torch.no_grad():
            sparse, dense = qsam.prompt_encoder(points, boxes, masks_in)
            masks, iou = qsam.mask_decoder.predict_masks(emb, qsam.prompt_encoder.get_dense_pe(), sparse, dense)
        ref = official['decoder']['outputs'][case]
        p50, p99, worst = _spread(masks[..., ::32, ::32], tensor_from_record(ref['masks_sub32']))
        if case == 'boxes':
            assert p99 < 1e-4 and _spread(iou, tensor_from_record(ref['iou']))[2] < 1e-5
        else:
            assert p50 < 0.03 and worst < 0.2, (case, p50, worst)


@pytest.mark.slow
def test_predictor_matches_official_w8a8(official, qsam):
    """The whole quantized model at 1024 x 1024. The official quantized encoder itself moves by a median 0.024
    (max 0.25) when its input is scaled by 1 + 1e-6; quantizing moves the embedding by a median 0.25."""
    base = load_fixture('tinysam_vit_t')['predictor']
    spec = base['image']
    image = (make_input(spec['shape'], spec['seed']) * spec['scale'] + spec['offset']).clamp(0, 255).to(torch.uint8)
    predictor = SamPredictor(qsam)
    predictor.set_image(image.numpy())
    ref = official['predictor']
    p50, p99, _ = _spread(predictor.get_image_embedding()[..., ::16, ::16], tensor_from_record(ref['features_sub16']))
    assert p50 < 0.06 and p99 < 0.25, (p50, p99)
    for key, kw in {'point': dict(point_coords=np.array(base['point_coords']),
                                  point_labels=np.array(base['point_labels'])),
                    'box_out': dict(box=np.array(base['box']))}.items():
        _, iou, low_res = predictor.predict(**kw, return_logits=True)
        p50, _, _ = _spread(torch.as_tensor(low_res)[..., ::32, ::32], tensor_from_record(ref[key]['low_res_sub32']))
        assert p50 < 0.1, (key, p50)


# ---------------------------------------------------------------- arithmetic: the formulas, on edge values

def _q(x, s, lo, hi, offset=0.0):
    """Reference fake quantization in numpy: round half to even, clamp, rescale."""
    return np.clip(np.round((x - offset) / s), lo, hi) * s + offset


def test_quant_layer_formulas():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(8, 6)
    scales = {'weight_scale': torch.tensor([0.01, 0.02, 0.03]).view(3, 1, 1, 1),
              'input_scale': torch.tensor([[0.1], [0.5]])}
    q = QuantLinear.from_float(lin, 8, 4, scales)
    x = torch.randn(5, 8, generator=g) * 3
    x[0, 4:] = torch.tensor([1.25, 1.75, -0.75, 100.0])  # second chunk (scale 0.5): 2.5, 3.5, -1.5, 200 codes
    w = lin.weight.detach().numpy().reshape(3, 2, 1, 8)
    w_ref = _q(w, scales['weight_scale'].numpy(), -128, 127).reshape(6, 8)
    x_ref = _q(x.numpy().reshape(5, 2, 4), scales['input_scale'].numpy(), -8, 7).reshape(5, 8)
    x_q = q.quantize_input(x).numpy()
    assert np.array_equal(x_q, x_ref)
    assert x_q[0, 4:].tolist() == [1.0, 2.0, -1.0, 3.5]  # halves round to even, 4 bits clamp at code 7
    assert np.allclose(q(x).detach().numpy(), x_ref @ w_ref.T + lin.bias.detach().numpy(), atol=1e-6)

    post = PostGeluQuantLinear.from_float(lin, 8, 8, {'input_scale': torch.tensor([[0.05]])})
    assert post.input_neg_scale.item() == pytest.approx(GELU_MIN / 128)
    neg = post.input_neg_scale.item()
    xg = np.array([[-0.2, -0.1, 0.0, 0.1, 3.0, 10.0, -0.01, 0.024]], dtype=np.float32)
    ref = _q(xg, 0.05, 0, 127) + _q(xg, np.float32(neg), -128, 0)
    assert np.allclose(post.quantize_input(torch.from_numpy(xg)).numpy(), ref, atol=1e-7)

    conv = nn.Conv2d(3, 4, 3, padding=1)
    cq = QuantConv2d.from_float(conv, 8, 8, {'weight_scale': torch.full((4, 1, 1, 1), 0.01),
                                             'input_scale': torch.tensor(0.02), 'input_offset': torch.tensor(0.5)})
    xc = torch.randn(1, 3, 5, 5, generator=g) * 2
    xc_ref = _q(xc.numpy(), 0.02, -128, 127, np.float32(0.5))
    assert np.allclose(cq.quantize_input(xc).numpy(), xc_ref, atol=1e-6)
    expected = nn.functional.conv2d(torch.from_numpy(xc_ref), torch.from_numpy(
        _q(conv.weight.detach().numpy(), 0.01, -128, 127)), conv.bias, padding=1)
    assert torch.allclose(cq(xc), expected, atol=1e-5)
    assert torch.equal(QuantConv2d.from_float(conv, 8, 32).quantize_input(xc), xc)  # 32-bit inputs stay float
    assert 'input_scale' not in dict(QuantConv2d.from_float(conv, 8, 32).named_buffers())

    convt = nn.ConvTranspose2d(4, 2, 2, stride=2)
    tq = QuantConvTranspose2d.from_float(convt, 8, 8, {'input_scale': torch.tensor(0.05),
                                                       'weight_scale': torch.tensor([0.01, 0.002]).view(1, 2, 1, 1)})
    xt = torch.randn(1, 4, 3, 3, generator=g)
    w_ref = torch.from_numpy(_q(convt.weight.detach().numpy(), np.array([0.01, 0.002], np.float32).reshape(1, 2, 1, 1),
                                -128, 127))
    assert torch.allclose(tq(xt), nn.functional.conv_transpose2d(
        torch.from_numpy(_q(xt.numpy(), 0.05, -128, 127)), w_ref, convt.bias, stride=2), atol=1e-6)


def test_quantized_layers_check_their_scales():
    lin = nn.Linear(8, 6)
    with pytest.raises(ValueError, match='do not divide'):
        QuantLinear.from_float(lin, scales={'weight_scale': torch.ones(4, 1, 1, 1)})
    with pytest.raises(ValueError, match='n_a dividing'):
        QuantLinear.from_float(lin, scales={'input_scale': torch.ones(3, 1)})
    with pytest.raises(ValueError, match='has no scale'):
        QuantLinear.from_float(lin, scales={'input_offset': torch.zeros(())})
    with pytest.raises(ValueError, match='per input channel'):
        QuantConv2d.from_float(nn.Conv2d(3, 4, 1), scales={'input_scale': torch.ones(1, 5, 1, 1)})
    with pytest.raises(ValueError, match='does not broadcast'):
        QuantConv2d.from_float(nn.Conv2d(3, 4, 1), scales={'weight_scale': torch.ones(5, 1, 1, 1)})
    with pytest.raises(ValueError, match='integer >= 2'):
        QuantLinear.from_float(lin, weight_bits=1)


# ---------------------------------------------------------------- assembly and zoo's file

def test_default_layers_and_swapping():
    model = build_tinysam(img_size=64)
    layers = default_quant_layers(model)
    assert len(layers) == 118 and 'image_encoder.head' not in layers
    assert not any(k.startswith('prompt_encoder.') for k in layers)
    assert sum(s.kind == 'linear_post_gelu' for s in layers.values()) == 10
    with pytest.raises(ValueError, match='no layer'):
        quantize_modules(model, {'image_encoder.nope': QuantLayer('linear')})
    with pytest.raises(ValueError, match='is a Conv2d'):
        quantize_modules(model, {'image_encoder.neck.0': QuantLayer('linear')})
    with pytest.raises(ValueError, match='unknown quantized layer kind'):
        QuantLayer('int4')
    q = build_tinysam_w8a8(img_size=64)
    assert isinstance(q.mask_decoder.output_upscaling[0], QuantConvTranspose2d)
    with torch.no_grad():
        assert q.image_encoder(torch.randn(1, 3, 64, 64)).shape == (1, 256, 4, 4)


def test_zoo_file_round_trip(tmp_path, qsam, converted):
    path = tmp_path / 'q.safetensors'
    save_quantized(path, qsam.state_dict(), converted.layers)
    state_dict, layers = load_quantized(path)
    assert layers == converted.layers
    assert all(torch.equal(state_dict[k], v) for k, v in qsam.state_dict().items())
    other = tmp_path / 'other.safetensors'
    from safetensors.torch import save_file
    save_file({'a': torch.zeros(1)}, str(other))
    with pytest.raises(ValueError, match='not a zoo Q-TinySAM file'):
        load_quantized(other)
