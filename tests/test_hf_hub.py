"""Hugging Face Hub folders: save, load back through local-dir: and hf-hub: (offline, from an HF cache the tests
fill themselves), train.py --push-to-hub against a fake HfApi, and one clear message for each kind of bad input.
Nothing here touches the network."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from huggingface_hub import constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import _http as hf_http
from PIL import Image
from safetensors.torch import load_file, save_file

import zoo
import zoo.hub
from zoo.benchmark import count_macs, resolve_input_shape
from zoo.registry import HubError, UnknownModelError, paper_of

#: The smallest variant of every family, with the size it is built at (None: the model's own).
FAMILY_MODELS = {
    'ghostnet': ('ghostnet_050', None), 'hiremlp': ('hire_mlp_tiny', None), 'wavemlp': ('wavemlp_t_dw', None),
    'pyramid_tnt': ('ptnt_ti_patch16_192', 64), 'vig': ('vig_ti_224_gelu', 64), 'slab': ('slab_pvt_v2_b0', 64),
    'squeezetime': ('squeezetime_hmdb51', None), 'cgrseg': ('cgrseg_t', None), 'tnt': ('tnt_s_patch16_224', None),
    'tinysam': ('tinysam_vit_t', 64),
}


def _build(name, img_size=None, **kwargs):
    return zoo.create_model(name, **(dict(img_size=img_size) if img_size else {}), **kwargs).eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def _cache_repo(repo_id: str, folder: Path) -> None:
    """Lay ``folder`` out as the HF cache holds a downloaded repository: refs/main -> a commit, snapshots/<commit>/."""
    repo = Path(constants.HF_HUB_CACHE) / f'models--{repo_id.replace("/", "--")}'
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text(commit)
    shutil.copytree(folder, repo / 'snapshots' / commit)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty HF cache in tmp_path, with downloads forbidden (HF_HUB_OFFLINE=1)."""
    cache = tmp_path / 'hf' / 'hub'
    cache.mkdir(parents=True)
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))
    monkeypatch.setenv('HF_HUB_CACHE', str(cache))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))  # huggingface_hub read the variables at import
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    return cache


def test_every_family_is_covered():
    assert set(FAMILY_MODELS) == set(zoo.list_families())


@pytest.mark.parametrize('family', sorted(FAMILY_MODELS))
def test_save_then_load_through_local_dir_and_hf_hub(family, tmp_path, offline_cache, one_thread):
    name, size = FAMILY_MODELS[family]
    model = _build(name, size)
    folder = zoo.hub.save(model, tmp_path / 'out')
    assert sorted(p.name for p in folder.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    assert json.loads((folder / 'config.json').read_text())['architecture'] == name

    local = zoo.create_model(f'local-dir:{folder}', pretrained=True)
    assert type(local) is type(model) and _same_weights(model, local)
    _cache_repo(f'zoo-test/{name}', folder)
    hub = zoo.create_model(f'hf-hub:zoo-test/{name}', pretrained=True)
    assert _same_weights(model, hub)
    # straight through timm too: its config.json records the size as [H, W], which every family takes back
    assert _same_weights(model, timm.create_model(f'hf-hub:zoo-test/{name}', pretrained=True))
    assert zoo.model_info(f'hf-hub:zoo-test/{name}').family == family


def test_tinysam_save_then_load_through_local_dir_and_hf_hub(tmp_path, offline_cache, one_thread):
    torch.manual_seed(0)
    sam = zoo.create_sam('tinysam')
    folder = zoo.hub.save(sam, tmp_path / 'tinysam')
    assert json.loads((folder / 'config.json').read_text())['architecture'] == 'tinysam'
    assert _same_weights(sam, zoo.create_sam(f'local-dir:{folder}', pretrained=True))
    _cache_repo('zoo-test/tinysam', folder)
    assert _same_weights(sam, zoo.create_sam('hf-hub:zoo-test/tinysam', pretrained=True))
    with pytest.raises(HubError, match=r'a whole SAM: build it with zoo.create_sam'):
        zoo.create_model('hf-hub:zoo-test/tinysam', pretrained=True)


@pytest.mark.slow
def test_q_tinysam_save_then_load(tmp_path, one_thread):
    qsam = zoo.create_sam('tinysam_w8a8')
    folder = zoo.hub.save(qsam, tmp_path / 'q')
    assert json.loads((folder / 'config.json').read_text())['architecture'] == 'tinysam_w8a8'
    assert _same_weights(qsam, zoo.create_sam(f'local-dir:{folder}', pretrained=True))


def test_model_card_facts_come_from_the_model(tmp_path, one_thread):
    model = _build('ghostnet_050', num_classes=7)
    metrics = {'final_top1': 91.25, 'epochs': 3}
    card = (zoo.hub.save(model, tmp_path / 'g', repo_id='me/g7', metrics=metrics) / 'README.md').read_text()
    cfg = model.pretrained_cfg
    macs = count_macs(model, torch.zeros(1, *cfg['input_size']))
    title, link = paper_of('ghostnet_050')
    for fact in (f'{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M', f'{macs / 1e9:.3f} G at 3x224x224',
                 f'[{title}]({link})', f'license: {cfg["license"]}', '**Classes:** 7', f'mean {tuple(cfg["mean"])}',
                 f'std {tuple(cfg["std"])}', '| final_top1 | 91.25 |', '| epochs | 3 |'):
        assert fact in card, fact
    usage = card.split('```python\n', 1)[1]
    assert usage.startswith('import zoo\n') and "zoo.create_model('hf-hub:me/g7', pretrained=True)" in usage
    # another model, another card: nothing is a template constant
    other = (zoo.hub.save(_build('hire_mlp_tiny'), tmp_path / 'h') / 'README.md').read_text()
    assert '18.04 M' in other and 'Hire-MLP' in other and 'Metrics' not in other


def test_pyramid_tnt_is_not_listed_as_downloadable():
    assert not timm.list_pretrained('ptnt_*')
    assert zoo.model_info('ptnt_s_patch16_256').official_url.startswith('https://pan.baidu.com/')
    with pytest.raises(RuntimeError, match='BaiduDisk'):
        zoo.create_model('ptnt_ti_patch16_192', pretrained=True)


# --- the command lines and adapters take Hub names ---

@pytest.fixture
def cgrseg_folder(tmp_path, one_thread):
    return zoo.hub.save(_build('cgrseg_t'), tmp_path / 'cgrseg')


def test_entry_points_take_hub_names(cgrseg_folder, tmp_path, capsys):
    from zoo.downstream import build_backbone
    from zoo.segment import main as segment
    from zoo.train.networks import check_model_name

    name = f'local-dir:{cgrseg_folder}'
    assert resolve_input_shape(name) == (3, 512, 512)
    check_model_name(name)
    image = tmp_path / 'img.png'
    Image.fromarray(np.zeros((40, 48, 3), dtype=np.uint8)).save(image)
    assert segment(['--model', name, '--short-side', '32', str(image)]) == 0
    assert 'wrote' in capsys.readouterr().out
    ghost = zoo.hub.save(_build('ghostnet_050'), tmp_path / 'ghost')
    backbone = build_backbone(f'local-dir:{ghost}', pretrained=True)
    assert backbone(torch.zeros(1, 3, 64, 64))[-1].shape[1] == backbone.channels[-1]


# --- train.py --push-to-hub ---

class FakeHfApi:
    """Records what would be created and uploaded; ``fail`` makes the upload raise as without a network."""
    calls: list = []
    fail = False

    def __init__(self, token=None, **kwargs):
        self.token = token

    def create_repo(self, repo_id, private=False, exist_ok=False):
        FakeHfApi.calls.append(('create_repo', repo_id, private))
        return type('RepoUrl', (), {'repo_id': repo_id})()

    def upload_folder(self, repo_id, folder_path, commit_message=''):
        if FakeHfApi.fail:
            raise OSError('[Errno 111] Connection refused')
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        FakeHfApi.calls.append(('upload_folder', repo_id, files))
        return type('CommitInfo', (), {'commit_url': f'https://huggingface.co/{repo_id}/commit/1'})()


@pytest.fixture
def fake_hub(monkeypatch):
    FakeHfApi.calls, FakeHfApi.fail = [], False
    monkeypatch.setattr(zoo.hub, 'HfApi', FakeHfApi)
    monkeypatch.setattr(zoo.hub, 'get_token', lambda: 'hf_test_token')
    return FakeHfApi


def _train_run(tmp_path, **options):
    from zoo.train import make_config, train
    cfg = make_config(dict(epochs=1, max_steps_per_epoch=2, progress=False, output=str(tmp_path / 'run'),
                           push_to_hub='me/ghost-digits', **options))
    return train(cfg)


def test_push_to_hub_uploads_the_final_weights(tmp_path, fake_hub, one_thread):
    summary = _train_run(tmp_path, hub_private=True)
    assert fake_hub.calls[0] == ('create_repo', 'me/ghost-digits', True)
    _, repo_id, files = fake_hub.calls[1]
    assert repo_id == 'me/ghost-digits' and sorted(files) == ['README.md', 'config.json', 'model.safetensors']
    assert summary['hub']['uploaded'] and summary['hub']['folder'] == str(tmp_path / 'run' / 'hub')
    final = torch.load(tmp_path / 'run' / 'last.pth', map_location='cpu', weights_only=True)['model']
    uploaded = load_file(tmp_path / 'run' / 'hub' / 'model.safetensors')
    assert final.keys() == uploaded.keys() and all(torch.equal(final[k], uploaded[k]) for k in final)
    card = files['README.md'].decode()
    assert f'| final_top1 | {summary["final_top1"]:.4g} |' in card and "hf-hub:me/ghost-digits" in card
    loaded = zoo.create_model(f'local-dir:{tmp_path / "run" / "hub"}', pretrained=True)
    assert loaded.num_classes == 10


def test_failed_upload_keeps_the_folder_and_the_run(tmp_path, fake_hub, capsys, one_thread):
    fake_hub.fail = True
    summary = _train_run(tmp_path)
    out = capsys.readouterr().out
    folder = tmp_path / 'run' / 'hub'
    assert f'upload it later with python -m zoo.hub push {folder} me/ghost-digits' in out
    assert not summary['hub']['uploaded'] and (folder / 'model.safetensors').is_file()
    assert json.loads((tmp_path / 'run' / 'summary.json').read_text())['hub']['uploaded'] is False


def test_push_without_token_is_one_clear_error(tmp_path, fake_hub, monkeypatch, capsys, one_thread):
    monkeypatch.setattr(zoo.hub, 'get_token', lambda: None)
    folder = zoo.hub.save(_build('ghostnet_050'), tmp_path / 'g')
    assert zoo.hub.main(['push', str(folder), 'me/g']) == 2
    assert capsys.readouterr().err.strip() == ('error: no Hugging Face token: log in with `hf auth login` or set '
                                               'HF_TOKEN')
    assert fake_hub.calls == []


# --- bad input: one clear message, never a folder that looks complete ---

@pytest.fixture
def ghost_folder(tmp_path, one_thread):
    return zoo.hub.save(_build('ghostnet_050'), tmp_path / 'ghost')


def test_folder_without_config(ghost_folder):
    (ghost_folder / 'config.json').unlink()
    with pytest.raises(HubError, match='has no config.json'):
        zoo.create_model(f'local-dir:{ghost_folder}', pretrained=True)


def test_unknown_architecture_names_it(ghost_folder):
    cfg = json.loads((ghost_folder / 'config.json').read_text())
    cfg['architecture'] = 'mystery_net_7'
    (ghost_folder / 'config.json').write_text(json.dumps(cfg))
    with pytest.raises(UnknownModelError, match=r"'mystery_net_7'.*import the package that registers"):
        zoo.create_model(f'local-dir:{ghost_folder}', pretrained=True)


def test_missing_and_misshaped_tensors_are_listed(ghost_folder):
    weights = load_file(ghost_folder / 'model.safetensors')
    weights.pop('conv_stem.weight')
    weights['classifier.weight'] = torch.zeros(3, 1280)
    save_file(weights, ghost_folder / 'model.safetensors')
    with pytest.raises(HubError, match=r"1 missing keys \['conv_stem.weight'\].*classifier.weight \(3, 1280\) vs "
                                       r"\(1000, 1280\)"):
        zoo.create_model(f'local-dir:{ghost_folder}', pretrained=True)


def test_offline_and_not_in_cache(offline_cache):
    with pytest.raises(HubError, match='not in the Hugging Face cache .* HF_HUB_OFFLINE=1'):
        zoo.create_model('hf-hub:zoo-test/absent', pretrained=True)


def test_no_network_and_not_in_cache(offline_cache, monkeypatch):
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(constants, 'ENDPOINT', 'http://127.0.0.1:9')  # nothing listens: refused at once
    monkeypatch.setattr(constants, 'HUGGINGFACE_CO_URL_TEMPLATE',
                        'http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}')
    monkeypatch.setattr(hf_http.time, 'sleep', lambda seconds: None)  # huggingface_hub's retry back-off
    with pytest.raises(HubError, match='cannot reach the Hugging Face Hub and config.json .* is not in the cache'):
        zoo.create_model('hf-hub:zoo-test/absent', pretrained=True)


def test_interrupted_save_leaves_no_complete_looking_folder(tmp_path, monkeypatch, one_thread):
    def broken(*args, **kwargs):
        raise RuntimeError('interrupted')

    monkeypatch.setattr(zoo.hub, 'model_card', broken)
    with pytest.raises(RuntimeError, match='interrupted'):
        zoo.hub.save(_build('ghostnet_050'), tmp_path / 'g')
    assert list(tmp_path.iterdir()) == []


def test_save_command_line_bad_input(tmp_path, capsys):
    assert zoo.hub.main(['save', '--model', 'ghostnet_05', '--out', str(tmp_path / 'x')]) == 2
    assert 'did you mean ghostnet_050' in capsys.readouterr().err
    assert zoo.hub.main(['save', '--model', 'ghostnet_050', '--checkpoint', str(tmp_path / 'nope.pth'),
                         '--out', str(tmp_path / 'x')]) == 2
    assert 'no checkpoint at' in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()


@pytest.mark.parametrize('name', ['vig_ti_224_gelu', 'slab_deit_t', 'slab_swin_t', 'slab_pvt_v2_b0', 'slab_cswin_t'])
def test_square_families_take_a_square_pair_and_refuse_others(name):
    pair, single = zoo.create_model(name, img_size=(64, 64)), zoo.create_model(name, img_size=64)
    assert {k: v.shape for k, v in pair.state_dict().items()} == {k: v.shape for k, v in single.state_dict().items()}
    with pytest.raises(ValueError, match=r'square size: img_size must be an int or \(S, S\), got \(64, 32\)'):
        zoo.create_model(name, img_size=(64, 32))
