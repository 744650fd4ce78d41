"""TinySAM: official architecture and outputs (fixture from xinghaochen/TinySAM), predictor, everything mode.

The model contract runs on the encoder in tests/test_contract.py (the sam task's adapter).
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import timm
import torch

import zoo
from fidelity import deterministic_state_dict, load_fixture, make_input, max_abs_diff, tensor_from_record
from zoo.benchmark import count_macs
from zoo.models.tinysam import (SamMaskGenerator, SamPredictor, TinySam, build_tinysam, create_sam,
                                uncovered_grid_points)
from zoo.models.tinysam.utils.amg import (build_point_grid, mask_to_rle, masks_to_boxes, remove_small_regions,
                                          rle_area, rle_to_mask, stability_score)

ENCODER = 'tinysam_vit_t'
TOL = 1e-4
# official numbers: 10.13M parameters, 6.07M in the encoder, 38.8 G MACs for the encoder at 1024 x 1024
PAPER_ENCODER_GMACS = 38.8


@pytest.fixture(scope='module')
def fixture():
    return load_fixture('tinysam_vit_t')


@pytest.fixture(scope='module')
def official_sd(fixture):
    return deterministic_state_dict(fixture['state_dict'], fixture['weights_seed'])


@pytest.fixture(scope='module')
def ckpt_path(official_sd, tmp_path_factory):
    """The deterministic weights saved as the official release is: a plain SAM state dict."""
    path = tmp_path_factory.mktemp('tinysam') / 'tinysam_42.3.pth'
    torch.save(official_sd, path)
    return path


@pytest.fixture(scope='module')
def sam(ckpt_path):
    return create_sam('tinysam', checkpoint=ckpt_path)


@pytest.fixture(scope='module')
def small_sam():
    """TinySAM's architecture at a 256-pixel input (16 x 16 embedding): fast behaviour tests."""
    torch.manual_seed(0)
    return build_tinysam(img_size=256).eval()


def _nparams(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- facts: parameters, MACs, layout

def test_param_counts_equal_official(fixture):
    model = build_tinysam()
    assert fixture['param_count'] == 10_130_092 and fixture['encoder_param_count'] == 6_065_532
    assert _nparams(model) == fixture['param_count']
    assert _nparams(model.image_encoder) == fixture['encoder_param_count']
    assert _nparams(timm.create_model(ENCODER)) == fixture['encoder_param_count']


def test_encoder_macs_match_paper():
    model = timm.create_model(ENCODER).to('meta')
    macs = count_macs(model, torch.empty(1, 3, 1024, 1024, device='meta'))
    assert abs(macs / 1e9 - PAPER_ENCODER_GMACS) / PAPER_ENCODER_GMACS < 0.02, macs


def test_official_layout_loads(official_sd, sam):
    """Every official key (less the non-persistent attention index buffers) lands in the model, unchanged."""
    loaded = sam.state_dict()
    assert len(loaded) == len(official_sd)
    ref = official_sd['image_encoder.layers.2.blocks.3.local_conv.c.weight']
    assert torch.equal(loaded['image_encoder.layers.2.blocks.3.local_conv.conv.weight'], ref)
    assert torch.equal(loaded['mask_decoder.iou_prediction_head.layers.2.bias'],
                       official_sd['mask_decoder.iou_prediction_head.layers.2.bias'])


@pytest.mark.parametrize('wrapper', ['model', 'state_dict'])
def test_wrapped_checkpoint_loads(official_sd, tmp_path, wrapper):
    path = tmp_path / 'ckpt.pth'
    torch.save({wrapper: official_sd}, path)
    model = create_sam('tinysam', checkpoint=path)
    assert torch.equal(model.prompt_encoder.no_mask_embed.weight, official_sd['prompt_encoder.no_mask_embed.weight'])


def test_encoder_loads_release_checkpoint_through_timm(ckpt_path, sam):
    """timm's pretrained path takes the whole-SAM release and keeps the encoder's weights."""
    enc = timm.create_model(ENCODER, pretrained=True, pretrained_cfg_overlay=dict(file=str(ckpt_path)))
    ref = sam.image_encoder.state_dict()
    got = enc.state_dict()
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_pretrained_fetches_the_release(ckpt_path, sam, monkeypatch):
    """pretrained=True asks timm's download cache for the official release URL (answered here with the test's
    file: nothing is downloaded) and loads what it returns."""
    module = importlib.import_module('zoo.models.tinysam.build_sam')
    asked = []
    monkeypatch.setattr(module, 'download_cached_file', lambda url, **kwargs: asked.append(url) or str(ckpt_path))
    model = create_sam('tinysam', pretrained=True)
    assert asked == ['https://github.com/xinghaochen/TinySAM/releases/download/3.0/tinysam_42.3.pth']
    ref = sam.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_checkpoint_of_another_model_is_refused(tmp_path):
    other = timm.create_model('resnet18').state_dict()
    with pytest.raises(ValueError, match='not a TinySAM checkpoint'):
        create_sam('tinysam', checkpoint=other)
    path = tmp_path / 'module.pth'
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module (like the W8A8 release), not a state dict
    with pytest.raises(ValueError, match='weights_only'):
        create_sam('tinysam', checkpoint=path)
    with pytest.raises(ValueError, match='unknown SAM model'):
        create_sam('sam_vit_h')


# ---------------------------------------------------------------- parity with the official code

@pytest.mark.parametrize('case', ['points', 'boxes', 'points_box_mask'])
def test_decoder_parity(fixture, sam, case):
    """Prompt encoder + mask decoder (all four mask tokens) equal the official ones on a fixed embedding."""
    dec = fixture['decoder']
    emb = make_input(dec['embedding_input']['shape'], dec['embedding_input']['seed'])
    mask_in = make_input(dec['mask_input']['shape'], dec['mask_input']['seed'])
    prompts = {
        'points': dict(point_coords=torch.tensor([[[100., 200.], [700., 650.]], [[512., 512.], [30., 1000.]]]),
                       point_labels=torch.tensor([[1, 0], [1, 1]])),
        'boxes': dict(boxes=torch.tensor([[50., 60., 500., 700.], [300., 100., 900., 400.]])),
        'points_box_mask': dict(point_coords=torch.tensor([[[400., 300.]]]), point_labels=torch.tensor([[1]]),
                                boxes=torch.tensor([[200., 150., 800., 600.]]), mask_input=mask_in),
    }[case]
    points = (prompts['point_coords'], prompts['point_labels']) if 'point_coords' in prompts else None
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points, prompts.get('boxes'), prompts.get('mask_input'))
        masks, iou = sam.mask_decoder.predict_masks(emb, sam.prompt_encoder.get_dense_pe(), sparse, dense)
        multi, multi_iou = sam.decode(emb, **prompts)
        single, single_iou = sam.decode(emb, **prompts, multimask_output=False)
    ref = dec['outputs'][case]
    assert max_abs_diff(masks[..., ::8, ::8], tensor_from_record(ref['masks_sub8'])) < TOL
    assert max_abs_diff(masks.mean((2, 3)), tensor_from_record(ref['masks_mean'])) < TOL
    assert max_abs_diff(iou, tensor_from_record(ref['iou'])) < TOL
    # TinySAM returns mask tokens 1..3; SAM's single-mask output is token 0
    assert torch.equal(multi, masks[:, 1:]) and torch.equal(multi_iou, iou[:, 1:])
    assert torch.equal(single, masks[:, :1]) and torch.equal(single_iou, iou[:, :1])


def _fixture_image(spec) -> np.ndarray:
    x = make_input(spec['shape'], spec['seed'])
    return (x * spec['scale'] + spec['offset']).clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.slow
def test_predictor_parity_full_resolution(fixture, sam):
    """Resize-longest-side, padding, the 1024 x 1024 encoder, decoding and upscaling equal the official
    SamPredictor (image embeddings, mask logits at the original size, IoU, low-res logits)."""
    ref = fixture['predictor']
    predictor = SamPredictor(sam)
    predictor.set_image(_fixture_image(ref['image']))
    feats = predictor.get_image_embedding()
    assert feats.shape == (1, 256, 64, 64)
    assert max_abs_diff(feats[..., ::8, ::8], tensor_from_record(ref['features_sub8'])) < TOL
    assert max_abs_diff(feats.mean((2, 3)), tensor_from_record(ref['features_mean'])) < TOL
    outputs = {
        'point': predictor.predict(np.array(ref['point_coords']), np.array(ref['point_labels']), return_logits=True),
        'box_out': predictor.predict(box=np.array(ref['box']), return_logits=True),
    }
    for key, (masks, iou, low_res) in outputs.items():
        assert masks.shape == (3, 300, 400)
        assert max_abs_diff(torch.as_tensor(masks)[..., ::10, ::10], tensor_from_record(ref[key]['masks_sub10'])) < TOL
        assert max_abs_diff(torch.as_tensor(iou), tensor_from_record(ref[key]['iou'])) < TOL
        assert max_abs_diff(torch.as_tensor(low_res)[..., ::8, ::8], tensor_from_record(ref[key]['low_res_sub8'])) < TOL
    # the timm-registered encoder computes the same embedding
    enc = timm.create_model(ENCODER)
    enc.load_state_dict(sam.image_encoder.state_dict())
    with torch.no_grad():
        x = sam.preprocess(torch.as_tensor(predictor.transform.apply_image(_fixture_image(ref['image'])))
                           .permute(2, 0, 1)[None].float())
        assert max_abs_diff(enc.eval()(x), feats) < TOL


# ---------------------------------------------------------------- the encoder as a timm backbone
# (the model contract runs on it in tests/test_contract.py, the sam task's adapter)

def test_encoder_stages_and_any_input_size():
    """Stage widths and strides (the last merge keeps stride 16); windows pad, so there is no fixed input grid."""
    model = timm.create_model(ENCODER).eval()
    assert zoo.model_info(ENCODER).task == 'sam'
    assert [fi['num_chs'] for fi in model.feature_info] == [64, 128, 160, 320]
    assert [fi['reduction'] for fi in model.feature_info] == [4, 8, 16, 16]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 70)).shape == (1, 256, 4, 5)


# ---------------------------------------------------------------- predictor

@pytest.fixture(scope='module')
def image():
    g = np.random.default_rng(0)
    return g.integers(0, 256, size=(120, 200, 3), dtype=np.uint8)


def test_predictor_encodes_once_and_batches(small_sam, image):
    calls = []
    handle = small_sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        p = SamPredictor(small_sam)
        p.set_image(image)
        m1, s1, l1 = p.predict(np.array([[30, 40]]), np.array([1]))
        m2, s2, _ = p.predict(np.array([[150, 90]]), np.array([1]))
        mb, sb, lb = p.predict(np.array([[[30, 40]], [[150, 90]]]), np.array([[1], [1]]))
        ms, ss, _ = p.predict(box=np.array([10, 20, 100, 110]), multimask_output=False)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert m1.shape == (3, 120, 200) and m1.dtype == bool and s1.shape == (3,) and l1.shape == (3, 64, 64)
    assert mb.shape == (2, 3, 120, 200) and sb.shape == (2, 3) and lb.shape == (2, 3, 64, 64)
    assert np.allclose(sb[0], s1, atol=1e-5) and np.allclose(sb[1], s2, atol=1e-5)
    assert (mb[0] != m1).mean() < 1e-3 and (mb[1] != m2).mean() < 1e-3
    assert ms.shape == (1, 120, 200) and ss.shape == (1,)
    # the low-res logits feed back as a mask prompt
    mm, _, _ = p.predict(np.array([[30, 40]]), np.array([1]), mask_input=l1[:1])
    assert mm.shape == (3, 120, 200)


def test_predictor_bad_input(small_sam, image):
    p = SamPredictor(small_sam)
    with pytest.raises(RuntimeError, match='set_image'):
        p.predict(np.array([[1, 1]]), np.array([1]))
    p.set_image(image)
    with pytest.raises(ValueError, match='outside the image'):
        p.predict(np.array([[250, 40]]), np.array([1]))
    with pytest.raises(ValueError, match='outside the image'):
        p.predict(box=np.array([-5, 0, 50, 50]))
    with pytest.raises(ValueError, match='empty'):
        p.predict(np.zeros((0, 2)), np.zeros((0,)))
    with pytest.raises(ValueError, match='no prompt'):
        p.predict()
    with pytest.raises(ValueError, match='point_labels'):
        p.predict(np.array([[1, 1]]))
    with pytest.raises(ValueError, match='image_format'):
        p.set_image(image, image_format='HSV')


def test_predictor_converts_grayscale_and_rgba(small_sam, image):
    p = SamPredictor(small_sam)
    gray = image[..., 0]
    with pytest.warns(UserWarning, match='grayscale'):
        p.set_image(gray)
    emb_gray = p.get_image_embedding().clone()
    p.set_image(np.repeat(gray[..., None], 3, axis=2))
    assert torch.equal(emb_gray, p.get_image_embedding())
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 7, np.uint8)], axis=2)
    with pytest.warns(UserWarning, match='alpha'):
        p.set_image(rgba)
    emb_rgba = p.get_image_embedding().clone()
    p.set_image(image)
    assert torch.equal(emb_rgba, p.get_image_embedding())
    p.set_image(image[..., ::-1].copy(), image_format='BGR')
    assert torch.equal(emb_rgba, p.get_image_embedding())


def test_model_forward_batched_interface(small_sam):
    img = torch.randint(0, 256, (3, 256, 192)).float()
    out = small_sam([{'image': img, 'original_size': (100, 75),
                      'point_coords': torch.tensor([[[50., 60.]]]), 'point_labels': torch.tensor([[1]])}])
    assert out[0]['masks'].shape == (1, 3, 100, 75) and out[0]['iou_predictions'].shape == (1, 3)
    with pytest.raises(ValueError, match='larger than the model input'):
        small_sam.preprocess(torch.zeros(3, 300, 100))


# ---------------------------------------------------------------- everything mode

@pytest.mark.parametrize('n', [8, 32])
def test_hierarchical_point_selection(n):
    h, w = 90, 160
    full_grid = build_point_grid(n)
    assert len(uncovered_grid_points(np.ones((h, w), bool), n)) == 0          # covered: no second pass
    assert np.array_equal(uncovered_grid_points(np.zeros((h, w), bool), n), full_grid)  # empty: the full grid
    half = np.zeros((h, w), bool)
    half[:, :w // 2] = True                                                    # left half covered
    pts = uncovered_grid_points(half, n)
    assert np.array_equal(pts, full_grid[full_grid[:, 0] > 0.5])             # exactly the right half
    top = np.zeros((h, w), bool)
    top[:h // 2] = True
    assert np.array_equal(uncovered_grid_points(top, n), full_grid[full_grid[:, 1] > 0.5])


def test_mask_helpers():
    masks = torch.zeros(3, 6, 5, dtype=torch.bool)
    masks[0, 1:4, 2:5] = True
    masks[1, 0, 0] = True
    masks[1, 5, 4] = True
    rles = mask_to_rle(masks)
    for m, rle in zip(masks, rles):
        assert np.array_equal(rle_to_mask(rle), m.numpy())
        assert rle_area(rle) == int(m.sum())
    assert masks_to_boxes(masks).tolist() == [[2, 1, 4, 3], [0, 0, 4, 5], [0, 0, 0, 0]]
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])
    assert stability_score(logits, 0.0, 1.0).item() == pytest.approx(1 / 3)  # #(>1) / #(>-1)
    blob = np.zeros((20, 20), bool)
    blob[2:12, 2:12] = True
    blob[5, 5] = False          # a 1-pixel hole
    blob[17, 17] = True         # a 1-pixel island
    filled, changed = remove_small_regions(blob, 4, 'holes')
    assert changed and filled[5, 5]
    cleaned, changed = remove_small_regions(filled, 4, 'islands')
    assert changed and not cleaned[17, 17] and cleaned[2:12, 2:12].all()


def test_mask_generator_modes(small_sam):
    g = np.random.default_rng(1)
    img = np.kron(g.integers(0, 256, size=(4, 5, 3)), np.ones((25, 25, 1))).astype(np.uint8)  # 100 x 125 blocks
    kw = dict(points_per_side=4, pred_iou_thresh=-1e9, stability_score_thresh=0.0, min_mask_region_area=10)
    gen = SamMaskGenerator(small_sam, **kw, high_score_thresh=-1e9)  # everything counts as covered
    anns = gen.hierarchical_generate(img)
    assert gen.stats['first_pass'] == 1 and gen.stats['second_pass'] == 0 and gen.stats['prompts'] == 1
    gen = SamMaskGenerator(small_sam, **kw, high_score_thresh=1e9)   # nothing covered: the full dense grid
    gen.hierarchical_generate(img)
    assert gen.stats['second_pass'] == 16 and gen.stats['prompts'] == 17
    anns = gen.generate(img)
    assert gen.stats['prompts'] == 16 and anns
    keys = {'segmentation', 'area', 'bbox', 'predicted_iou', 'point_coords', 'stability_score'}
    assert all(set(a) == keys and a['segmentation'].shape == (100, 125) for a in anns)
    assert all(a['area'] == a['segmentation'].sum() for a in anns)
    boxes = torch.tensor([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2], a['bbox'][1] + a['bbox'][3]]
                          for a in anns])
    from torchvision.ops import box_iou
    iou = box_iou(boxes, boxes) - torch.eye(len(boxes))
    assert (iou <= 0.7 + 1e-6).all()
    strict = SamMaskGenerator(small_sam, points_per_side=4, pred_iou_thresh=1e9)
    assert strict.generate(img) == []
    with pytest.raises(ValueError, match='points_per_side'):
        SamMaskGenerator(small_sam, points_per_side=2)
