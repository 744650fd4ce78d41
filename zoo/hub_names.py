"""Hugging Face Hub model names: ``'hf-hub:ORG/NAME[@REVISION]'`` and ``'local-dir:PATH'`` (timm's two sources).

Resolves such a name to its files (downloaded into, or found in, the HF cache; or a local folder) and reads its
``config.json`` in timm's format, with one clear :class:`HubError` per thing that can be missing. The registry's
``create_model`` / ``model_info`` use it for every name with a prefix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import timm
from timm.models import is_model as _timm_is_model

__all__ = ['CONFIG_NAME', 'WEIGHTS_NAME', 'HubError', 'HubConfig', 'hub_source', 'hub_file', 'hub_config']


class HubError(ValueError):
    """A ``hf-hub:`` / ``local-dir:`` model that cannot be read; the message says what is missing and the fix."""


#: The files of a Hub model folder: timm's config (architecture, model_args, pretrained_cfg) and the weights.
CONFIG_NAME = 'config.json'
WEIGHTS_NAME = 'model.safetensors'
_HUB_SOURCES = {'hf-hub': 'hf-hub', 'hf_hub': 'hf-hub', 'local-dir': 'local-dir'}


@dataclass(frozen=True)
class HubConfig:
    """What a Hub model folder's ``config.json`` says: the architecture to build, the keyword arguments it was
    built with (``model_args``) and its pretrained_cfg (input size, mean / std, classifier, ...)."""
    name: str
    architecture: str
    pretrained_cfg: dict
    model_args: dict


def hub_source(name: str) -> Optional[tuple[str, str]]:
    """``('hf-hub', 'ORG/NAME[@REV]')`` or ``('local-dir', PATH)`` for a prefixed name; None for a registry name."""
    source, sep, location = name.partition(':')
    if not sep or source.lower() not in _HUB_SOURCES:
        return None
    if not location.strip():
        raise HubError(f'{name!r} names nothing after {source!r}: write hf-hub:ORG/NAME or local-dir:PATH')
    return _HUB_SOURCES[source.lower()], location


def _missing_file(name: str, filename: str) -> HubError:
    if filename == CONFIG_NAME:
        return HubError(f'{name} has no {CONFIG_NAME}, so nothing says which architecture it holds: it is not a '
                        f'timm / zoo model folder (python -m zoo.hub save writes one)')
    return HubError(f'{name} has no {filename} (python -m zoo.hub save writes the weights as {WEIGHTS_NAME})')


def _download(name: str, location: str, filename: str) -> Path:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError, HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    repo_id, _, revision = location.partition('@')
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision or None))
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise HubError(f'{filename} of {name} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and '
                           f'HF_HUB_OFFLINE=1 forbids downloading it: unset HF_HUB_OFFLINE where there is a network, '
                           f'or load a copy of the folder with local-dir:PATH') from None
        raise HubError(f'cannot reach the Hugging Face Hub and {filename} of {name} is not in the cache '
                       f'({constants.HF_HUB_CACHE}): check the network (or HF_ENDPOINT), or load a copy of the '
                       f'folder with local-dir:PATH') from None
    except RevisionNotFoundError:
        raise HubError(f'the Hub repository {repo_id} has no revision {revision!r}') from None
    except RepositoryNotFoundError:
        raise HubError(f'no Hub repository {repo_id!r} (if it is private or gated, log in with `hf auth login` or '
                       f'set HF_TOKEN)') from None
    except EntryNotFoundError:
        raise _missing_file(name, filename) from None
    except HFValidationError as e:
        raise HubError(f'{name!r}: {repo_id!r} is not a Hub repository id ({e}); write hf-hub:ORG/NAME') from None


def hub_file(name: str, filename: str = WEIGHTS_NAME) -> Path:
    """Local path of ``filename`` in a ``hf-hub:`` repository (downloaded into, or found in, the HF cache) or a
    ``local-dir:`` folder; a :class:`HubError` that says what is missing and what to do otherwise."""
    source = hub_source(name)
    if source is None:
        raise HubError(f'{name!r} is not a Hub name: write hf-hub:ORG/NAME or local-dir:PATH')
    kind, location = source
    if kind == 'hf-hub':
        return _download(name, location, filename)
    folder = Path(location).expanduser()
    if not folder.is_dir():
        raise HubError(f'{name}: no folder {folder}')
    if not (folder / filename).is_file():
        raise _missing_file(name, filename)
    return folder / filename


def _sam_architectures() -> tuple[str, ...]:
    from .models.tinysam.build_sam import SAM_MODELS  # imported late: tinysam registers its encoder through this module
    return tuple(SAM_MODELS)


def hub_config(name: str) -> HubConfig:
    """Read the ``config.json`` of a ``hf-hub:`` / ``local-dir:`` name (timm's format) and check that its
    architecture can be built: a zoo or timm model, or a SAM of :func:`zoo.create_sam`."""
    path = hub_file(name, CONFIG_NAME)
    try:
        cfg = json.loads(path.read_text(encoding='utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HubError(f'the {CONFIG_NAME} of {name} is not valid JSON ({e})') from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get('architecture'), str):
        raise HubError(f'the {CONFIG_NAME} of {name} names no "architecture": it is not a timm / zoo model config')
    from timm.models._hub import _parse_model_cfg  # timm's own reading of its config format
    pretrained_cfg, architecture, model_args = _parse_model_cfg(cfg, {})
    base = architecture.split('.', 1)[0]
    from .registry import UnknownModelError, is_zoo_model  # late: the registry imports this module
    if not is_zoo_model(base) and not _timm_is_model(base) and base not in _sam_architectures():
        from .version import __version__
        raise UnknownModelError(
            f'{name} holds architecture {architecture!r}, which neither zoo {__version__} nor timm {timm.__version__} '
            f'registers: upgrade them (pip install -U timm), or import the package that registers {architecture!r} '
            f'before creating the model')
    return HubConfig(name=name, architecture=architecture, pretrained_cfg=pretrained_cfg, model_args=model_args)
