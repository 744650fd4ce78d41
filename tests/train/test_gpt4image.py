"""GPT4Image: the embeddings command with a tiny local open_clip text encoder, training with the alignment term
on the digits, the projection kept out of the saved weights, and clear errors before training."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import zoo  # noqa: F401
from zoo.train import ConfigError, DataError, evaluate, load_recipe, make_config, train
from zoo.train.checkpoint import load_checkpoint
from zoo.train.data import ImageSamples, build_datasets, find_folder_samples, load_digits_samples
from zoo.train.embed_descriptions import main as embed_main
from zoo.train.networks import read_state_dict
from zoo.train.text_align import (TextEmbeddingSamples, contrastive_alignment_loss, cosine_alignment_loss,
                                  read_text_embeddings, sample_keys, write_text_embeddings)

from train_helpers import make_image_folder, tiny_config

open_clip = pytest.importorskip('open_clip')
WORDS = 'zero one two three four five six seven eight nine'.split()


@pytest.fixture(scope='module')
def text_encoder(tmp_path_factory):
    """A tiny randomly initialised open_clip model saved as ``local-dir:`` (config + weights), built offline."""
    root = tmp_path_factory.mktemp('clip')
    cfg = {'embed_dim': 16,
           'vision_cfg': {'image_size': 32, 'layers': 1, 'width': 32, 'head_width': 32, 'patch_size': 16},
           'text_cfg': {'context_length': 16, 'vocab_size': 49408, 'width': 32, 'heads': 2, 'layers': 1}}
    (root / 'open_clip_config.json').write_text(json.dumps({'model_cfg': cfg}))
    torch.manual_seed(0)
    model = open_clip.create_model(f'local-dir:{root}')
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / 'open_clip_model.safetensors'))
    return f'local-dir:{root}', model.eval()


@pytest.fixture(scope='module')
def digits_embeddings(text_encoder, tmp_path_factory):
    """A description of every digits training image, encoded by the command. The descriptions name the digit
    (what a multimodal LLM would see), so images of a class share one: the contrastive loss treats them as
    positives of each other."""
    root = tmp_path_factory.mktemp('emb')
    cfg = tiny_config(root)
    keys = sample_keys(cfg, build_datasets(cfg).train)
    descriptions = {k: f'a handwritten digit {WORDS[int(k.split("/")[1])]}' for k in keys}
    (root / 'descriptions.json').write_text(json.dumps(descriptions))
    out = root / 'text.safetensors'
    assert embed_main(['--descriptions', str(root / 'descriptions.json'), '--out', str(out),
                       '--model', text_encoder[0], '--batch-size', '512']) == 0
    return out, descriptions


def test_command_encodes_with_the_saved_weights(text_encoder, digits_embeddings, tmp_path):
    path, descriptions = digits_embeddings
    table = read_text_embeddings(path)
    assert table.keys == sorted(descriptions) and table.dim == 16 and len(table.keys) == 1437
    assert table.metadata['encoder'] == text_encoder[0]
    torch.testing.assert_close(table.vectors.norm(dim=1), torch.ones(1437))
    model = text_encoder[1]  # the weights the command loaded, not a fresh random encoder
    tokens = open_clip.get_tokenizer(text_encoder[0])([descriptions[k] for k in table.keys[:3]])
    with torch.no_grad():
        torch.testing.assert_close(table.vectors[:3], model.encode_text(tokens, normalize=True), atol=1e-5, rtol=1e-5)
    # .npz round trip
    npz = write_text_embeddings(tmp_path / 'text.npz', table.keys, table.vectors, {'encoder': 'x'})
    again = read_text_embeddings(npz)
    assert again.keys == table.keys and torch.equal(again.vectors, table.vectors)
    assert again.metadata['encoder'] == 'x'


def test_command_errors(text_encoder, tmp_path, capsys):
    root = make_image_folder(tmp_path / 'data', per_class=1)
    (tmp_path / 'd.json').write_text(json.dumps({'train/a/0.png': 'a red square', 'train/a/7.png': 'missing'}))
    args = ['--descriptions', str(tmp_path / 'd.json'), '--out', str(tmp_path / 'e.safetensors')]
    assert embed_main(args + ['--data-dir', str(root), '--model', text_encoder[0]]) == 2
    assert 'train/a/7.png' in capsys.readouterr().err
    (tmp_path / 'nothing').mkdir()
    (tmp_path / 'nothing' / 'open_clip_config.json').write_text(
        (Path(text_encoder[0][len('local-dir:'):]) / 'open_clip_config.json').read_text())
    assert embed_main(args + ['--model', f'local-dir:{tmp_path / "nothing"}']) == 2  # a config without weights
    assert 'cannot load text encoder' in capsys.readouterr().err
    assert not (tmp_path / 'e.safetensors').exists()


def test_digits_keys_follow_the_training_split():
    cfg = tiny_config(Path('.'))
    data = build_datasets(cfg)
    keys = sample_keys(cfg, data.train)
    from sklearn.datasets import load_digits
    images = (load_digits().images * (255. / 16.)).round().clip(0, 255).astype(np.uint8)
    x_tr, y_tr, *_ = load_digits_samples(cfg.val_fraction, cfg.data_seed)
    for key, image, label in zip(keys[:50], x_tr, y_tr):
        _, cls, name = key.split('/')
        assert int(cls) == label and np.array_equal(images[int(name[:-4])], image)


def test_alignment_losses():
    t = torch.eye(2)
    assert cosine_alignment_loss(2 * t, t) == 0. and cosine_alignment_loss(-t, t) == 2.
    # perfect match at temperature 1: logits [[1, 0], [0, 1]], each row's CE is log(1 + e^-1)
    torch.testing.assert_close(contrastive_alignment_loss(t, t, 1.), torch.tensor(math.log(1 + math.exp(-1))))
    # two images with the same description are positives of each other, not negatives
    same = torch.tensor([[1., 0.], [1., 0.]])
    torch.testing.assert_close(contrastive_alignment_loss(same, same, 1.), torch.tensor(math.log(2.)))


def test_embedding_follows_the_image_served_past_a_corrupt_file(tmp_path):
    root = make_image_folder(tmp_path / 'data', per_class=2)
    (root / 'train' / 'a' / '0.png').write_bytes(b'broken')
    files, labels, _ = find_folder_samples(root / 'train')
    samples = TextEmbeddingSamples(ImageSamples(files, labels), torch.arange(4.)[:, None])
    with pytest.warns(UserWarning, match='skipping corrupt image'):
        _, label, vector = samples[0]  # a/0.png is unreadable: a/1.png is served, with its own embedding
    assert (label, vector.item()) == (0, 1.)


def test_gpt4image_run_aligns_and_drops_the_projection(tiny, tmp_path, digits_embeddings):
    path = str(digits_embeddings[0])
    opts = dict(paradigm='gpt4image', text_embeddings=path, text_dim=16, align_loss='contrastive',
                max_steps_per_epoch=4)
    train(tiny(epochs=3, **opts))
    out = tmp_path / 'run'
    ckpt = load_checkpoint(out / 'last.pth')
    align = [r['train_loss_align'] for r in ckpt['history']]
    assert align[-1] < 0.9 * align[0] and 'train_loss_gt' in ckpt['history'][0]
    plain = timm.create_model('test_resnet', num_classes=10)
    assert set(ckpt['model']) == set(plain.state_dict())  # no projection in the model weights
    assert set(load_checkpoint(out / 'best.pth')) == {'model', 'epoch', 'val_top1', 'config', 'classes'}
    assert set(ckpt['text_head']) == {'weight', 'bias'} and ckpt['text_head']['weight'].shape[0] == 16
    plain.load_state_dict(read_state_dict(out / 'best.pth'))
    # --resume restores the projection; --evaluate reads the plain model
    train(tiny(epochs=4, resume=True, **opts))
    assert load_checkpoint(out / 'last.pth')['step'] == 16
    assert evaluate(tiny(evaluate=True))['val_top1'] >= 0.


def test_embedding_file_errors_before_training(tiny, tmp_path, digits_embeddings):
    path, descriptions = digits_embeddings
    table = read_text_embeddings(path)
    with pytest.raises(ConfigError, match='16-dimensional text embeddings but --text-dim is 512'):
        train(tiny(paradigm='gpt4image', text_embeddings=str(path), text_dim=512))
    gap = write_text_embeddings(tmp_path / 'gap.safetensors', table.keys[1:], table.vectors[1:])
    with pytest.raises(DataError, match=f'no text embedding for 1 of 1437 training images.*{table.keys[0]}'):
        train(tiny(paradigm='gpt4image', text_embeddings=str(gap)))
    folder_keys = ['train/n01440764/a.JPEG', 'train/n01443537/b.JPEG']
    other = write_text_embeddings(tmp_path / 'other.npz', folder_keys, torch.ones(2, 16), {'data': 'imagenet'})
    with pytest.raises(DataError, match="written for another dataset \\(data 'imagenet'\\)"):
        train(tiny(paradigm='gpt4image', text_embeddings=str(other)))
    with pytest.raises(DataError, match='does not exist'):
        train(tiny(paradigm='gpt4image', text_embeddings=str(tmp_path / 'missing.safetensors')))
    with pytest.raises(ConfigError, match='needs --text-embeddings'):
        train(tiny(paradigm='gpt4image'))
    assert not (tmp_path / 'run' / 'last.pth').exists()  # refused before the first step
    with pytest.raises(ConfigError, match='mixup / cutmix'):
        tiny(paradigm='gpt4image', text_embeddings=str(path), mixup=0.8)
    recipe = load_recipe(Path(__file__).parents[2] / 'configs' / 'train' / 'gpt4image.yaml')
    cfg = make_config({**recipe, 'data_dir': '/data/imagenet'})
    assert (cfg.paradigm, cfg.align_loss, cfg.text_dim, cfg.mixup) == ('gpt4image', 'contrastive', 512, 0.)
