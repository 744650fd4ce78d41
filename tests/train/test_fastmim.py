"""FastMIM: HOG targets by hand, masking, the mask token at the patch embedding of several backbone families,
pre-training on the digits and the hand-off to fine-tuning, FastMIM-P's resolution schedule."""
import math
from pathlib import Path

import pytest
import timm
import torch

import zoo  # noqa: F401
from zoo.train import ConfigError, load_recipe, make_config, train
from zoo.train import mim as mim_module
from zoo.train.checkpoint import load_checkpoint
from zoo.train.hog import hog_histograms, hog_patch_targets
from zoo.train.mim import MaskedImageModel, masked_mse_loss, random_block_mask, size_for_epoch
from zoo.train.networks import read_state_dict

RECIPES = Path(__file__).parents[2] / 'configs' / 'train'


# small models on a shared CPU: one intra-op thread (as the training recipes for the digits use)
pytestmark = pytest.mark.usefixtures('one_thread')


def _ramp(values):
    """An 8x8 single-channel image whose every row is ``values``: a purely horizontal gradient."""
    return torch.tensor(values, dtype=torch.float32).repeat(8, 1)[None, None]


def test_hog_of_a_horizontal_ramp_by_hand():
    # I(y, x) = x^2. Sobel d/dx with reflected borders: (I(x+1) - I(x-1)) * (1 + 2 + 1) = 16x inside, 0 in the
    # two border columns (the mirror pixel equals the other neighbour); d/dy = 0 everywhere. Orientation 0 ->
    # bin 0. Left 4x4 cell: 4 rows x 16 * (0 + 1 + 2 + 3) = 384; right cell: 4 rows x 16 * (4 + 5 + 6 + 0) = 960.
    hist = hog_histograms(_ramp([x * x for x in range(8)]), bins=9, cell=4, normalize=False)
    assert hist.shape == (1, 1, 9, 2, 2)
    expected = torch.zeros(9, 2, 2)
    expected[0, :, 0], expected[0, :, 1] = 384., 960.
    torch.testing.assert_close(hist[0, 0], expected)
    # the transposed image has a vertical gradient: orientation pi/2 -> bin floor(9 / 2) = 4, cells transposed
    vertical = hog_histograms(_ramp([x * x for x in range(8)]).transpose(2, 3), bins=9, cell=4, normalize=False)
    torch.testing.assert_close(vertical[0, 0], expected.roll(4, 0).transpose(1, 2))
    # orientation is unsigned: a descending ramp lands in the same bin; normalised cells have unit length
    descending = hog_histograms(-_ramp([x * x for x in range(8)]), bins=9, cell=4)
    torch.testing.assert_close(descending[0, 0, 0], torch.ones(2, 2))
    assert descending[0, 0, 1:].abs().sum() == 0


def test_hog_of_a_diagonal_ramp_by_hand():
    # I = x + y: inside, gx = gy = 8, orientation pi/4 -> bin floor(9 / 4) = 2 with magnitude 8 * sqrt(2);
    # on the top border row gy = 0 (mirror), so those pixels count 8 in bin 0; on the left column, 8 in bin 4.
    img = (torch.arange(8.)[None, :] + torch.arange(8.)[:, None])[None, None]
    cell = hog_histograms(img, bins=9, cell=4, normalize=False)[0, 0, :, 0, 0]
    expected = torch.zeros(9)
    expected[0], expected[2], expected[4] = 3 * 8., 9 * 8. * math.sqrt(2), 3 * 8.
    torch.testing.assert_close(cell, expected)


def test_hog_is_batched_per_channel_and_regrouped_per_patch():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 16, 16)
    hist = hog_histograms(images, bins=9, cell=4)
    alone = hog_histograms(images[1:, 2:], bins=9, cell=4)
    torch.testing.assert_close(hist[1:, 2:], alone)  # each image and channel on its own
    targets = hog_patch_targets(images, patch=8, bins=9, cell=4)
    assert targets.shape == (2, 4, 2 * 2 * 3 * 9)
    # token 1 is the top-right 8x8 patch: cells (0, 2), (0, 3), (1, 2), (1, 3) of every channel and bin
    cells = hist[0].reshape(27, 4, 4)[:, 0:2, 2:4]  # (C * bins, 2, 2)
    torch.testing.assert_close(targets[0, 1], cells.permute(1, 2, 0).reshape(-1))
    with pytest.raises(ValueError, match='must tile'):
        hog_patch_targets(images, patch=6, cell=4)


def test_random_block_mask_hides_an_exact_share_per_image():
    mask = random_block_mask(8, (4, 4), 0.75)
    assert mask.shape == (8, 4, 4) and mask.dtype == torch.bool
    assert mask.flatten(1).sum(1).tolist() == [12] * 8
    assert len({tuple(m.flatten().tolist()) for m in mask}) > 1  # drawn per image
    pred, target = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    target[0, 0] = 5.  # an error on a visible token does not count
    assert masked_mse_loss(pred, target, torch.tensor([[False, True, True]])) == 1.


@pytest.mark.parametrize('name, size', [
    ('test_vit', 32),            # ViT: the patch projection
    ('test_resnet', 64),         # CNN: the stem's first conv
    ('slab_pvt_v2_b0', 64),      # PVT / SLAB (hierarchical)
    ('slab_swin_t', 64),         # Swin / SLAB (hierarchical)
    ('pvig_ti_224_gelu', 64),    # ViG (graph)
    ('wavemlp_t', 64),           # Wave-MLP
])
def test_mask_token_replaces_the_patch_embedding_of_masked_squares(name, size):
    torch.manual_seed(0)
    kwargs = {'img_size': size} if name in ('test_vit', 'slab_swin_t') else {}
    net = MaskedImageModel(timm.create_model(name, num_classes=10, **kwargs), img_size=size, mask_ratio=0.5,
                           decoder_depth=1)
    seen, squares = [], []

    def record(m, a, out):  # runs after the token
        seen.append(out.detach())
        squares.append(None if net._grid_mask is None else net._grid_mask.clone())
    net.embed_conv.register_forward_hook(record)
    x = torch.randn(2, 3, size, size)
    _, (pred, target, cell_mask) = net(x)
    assert pred.shape == target.shape and cell_mask.shape == pred.shape[:3]
    assert squares[0].mean() == cell_mask.float().mean() == 0.5  # the loss counts exactly the masked squares
    embedded, plain = seen[0], net.embed_conv(x).detach()
    m = torch.nn.functional.interpolate(squares[0], size=plain.shape[-2:])
    m = m.bool().expand_as(plain)
    token = net.decoder.mask_token.detach().view(1, -1, 1, 1).expand_as(plain)
    torch.testing.assert_close(embedded[m], token[m])
    torch.testing.assert_close(embedded[~m], plain[~m])
    loss = masked_mse_loss(pred, target, cell_mask)
    loss.backward()
    assert net.decoder.mask_token.grad.abs().sum() > 0 and net.embed_conv.weight.grad.abs().sum() > 0
    net.zero_grad()
    net.student(x).sum().backward()  # outside pre-training the backbone is untouched: no token in the graph
    assert net.decoder.mask_token.grad is None
    torch.testing.assert_close(seen[1], plain)


def test_mask_geometry_leaves_part_of_every_image_visible():
    # 32-px digits and a stride-32 backbone: FastMIM's 32-px squares would hide the whole image (the encoder
    # would learn a constant), so the default squares shrink to keep a 4 x 4 grid; asked for, it is refused
    net = MaskedImageModel(timm.create_model('test_resnet'), img_size=32)
    assert (net.stride, net.mask_patch) == (32, 8)
    _, (pred, _, cell_mask) = net(torch.randn(4, 3, 32, 32))
    assert pred.shape == (4, 1, 16, 27) and cell_mask.sum((1, 2)).tolist() == [12] * 4  # 12 of 16 squares
    with pytest.raises(ValueError, match='masks all of a grid of 1 mask patch'):
        MaskedImageModel(timm.create_model('test_resnet'), img_size=32, mask_patch=32)
    assert MaskedImageModel(timm.create_model('test_resnet'), img_size=128).mask_patch == 32  # FastMIM's own
    with pytest.raises(ValueError, match='multiple of the patch embedding.s stride'):
        MaskedImageModel(timm.create_model('test_resnet'), img_size=64, mask_patch=12)  # HOG cells of 8 px
    with pytest.raises(ValueError, match='HOG cells of 6 px'):
        MaskedImageModel(timm.create_model('test_resnet'), img_size=64, hog_cell=6)
    with pytest.raises(ValueError, match='cannot take 48x48'):  # a ViT of fixed input size, FastMIM-P sizes
        MaskedImageModel(timm.create_model('test_vit', img_size=64, dynamic_img_size=False), img_size=64,
                         mask_patch=16, sizes=[48, 64], size_epochs=[0, 1])
    net = MaskedImageModel(timm.create_model('test_resnet'), img_size=128, mask_patch=64, mask_ratio=0.5)
    _, (_, _, cell_mask) = net(torch.randn(3, 3, 128, 128))
    assert (cell_mask.all(-1) == cell_mask.any(-1)).all()  # a 64-px square covers 2 x 2 tokens of 32 px wholly
    assert cell_mask.all(-1).sum(1).tolist() == [8] * 3  # two of the four squares: 8 of 16 tokens


def test_pretrain_on_digits_then_finetune_from_the_encoder(tiny, tmp_path):
    opts = dict(paradigm='fastmim', model='test_vit', img_size=32, batch_size=32, max_steps_per_epoch=6,
                mim_mask_ratio=0.5, mim_mask_patch=16, mim_hog_cell=8)
    summary = train(tiny(epochs=3, **opts))
    ckpt = load_checkpoint(tmp_path / 'run' / 'last.pth')
    history = ckpt['history']
    assert history[-1]['train_loss_mim'] < 0.75 * history[0]['train_loss_mim']
    assert history[-1]['val_loss'] < history[0]['val_loss']  # same held-out masks every epoch
    assert summary['final_top1'] is None and 'train_top1' not in history[0]
    plain = timm.create_model('test_vit', img_size=32, num_classes=10)
    assert set(ckpt['model']) == set(plain.state_dict())  # the encoder, and nothing else
    assert 'mask_token' in ckpt['mim_decoder'] and not any('mask_token' in k for k in ckpt['model'])
    assert plain.load_state_dict(read_state_dict(tmp_path / 'run' / 'last.pth')).missing_keys == []
    assert not (tmp_path / 'run' / 'best.pth').exists()  # nothing scored: the last encoder is the result
    # --resume restores the decoder too and continues the step count
    train(tiny(epochs=4, resume=True, **opts))
    resumed = load_checkpoint(tmp_path / 'run' / 'last.pth')
    assert resumed['step'] == 24 and resumed['history'][:3] == history
    # fine-tuning with train.py: the pre-trained encoder is the initial checkpoint (strict load)
    ft = train(tiny(model='test_vit', img_size=32, initial_checkpoint=str(tmp_path / 'run' / 'last.pth'),
                    output=str(tmp_path / 'finetune')))
    assert ft['final_top1'] is not None and ft['steps'] == 2


def test_fastmim_p_enlarges_the_input_epoch_by_epoch(tiny, monkeypatch):
    assert [size_for_epoch([32, 48, 64], [0, 2, 3], e) for e in range(5)] == [32, 32, 48, 64, 64]
    seen = []
    original = mim_module.final_feature_map

    def record(model, x):
        if model.training:
            seen.append(x.shape[-1])
        return original(model, x)
    monkeypatch.setattr(mim_module, 'final_feature_map', record)
    recipe = load_recipe(RECIPES / 'fastmim_p.yaml')
    assert recipe['paradigm'] == 'fastmim' and len(recipe['mim_sizes']) == len(recipe['mim_size_epochs']) > 1
    # the recipe's 32-px squares would hide all of a 32-px image: 16-px squares here
    small = dict(dataset='digits', data_dir='', model='test_resnet', img_size=64, mim_sizes=[32, 64],
                 mim_mask_patch=16, mim_size_epochs=[0, 1], mim_decoder_dim=0, mim_decoder_depth=1, epochs=2,
                 batch_size=16, max_steps_per_epoch=2, warmup_epochs=0, workers=0, threads=1, amp=False, progress=False)
    cfg = tiny()
    train(make_config({**recipe, **small, 'output': cfg.output}))
    assert seen == [32, 32, 64, 64]


def test_fastmim_recipe_and_config_errors(tiny):
    recipe = load_recipe(RECIPES / 'fastmim.yaml')
    assert (recipe['paradigm'], recipe['img_size'], recipe['mim_target'], recipe['mim_mask_ratio']) == \
        ('fastmim', 128, 'hog', 0.75)
    assert make_config({**recipe, 'data_dir': '/data/imagenet'}).mim_decoder_depth == 4  # a valid configuration
    with pytest.raises(ConfigError, match='takes no --distill kd'):
        tiny(paradigm='fastmim', distill='kd', teacher='test_resnet', teacher_pretrained=True)
    with pytest.raises(ConfigError, match='one start epoch per size'):
        tiny(paradigm='fastmim', mim_sizes=[16, 32])
    with pytest.raises(ConfigError, match='within 1..img_size'):
        tiny(paradigm='fastmim', mim_sizes=[32, 64], mim_size_epochs=[0, 1])
    with pytest.raises(ConfigError, match='test_resnet: the mask patch \\(12 px\\)'):
        train(tiny(paradigm='fastmim', mim_mask_patch=12))
