"""Training configuration: one dataclass, recipes in YAML, every field overridable on the command line.

Precedence: dataclass defaults < ``--config recipe.yaml`` < command-line flags. Each field ``foo_bar``
is the flag ``--foo-bar``; booleans also take ``--no-foo-bar``; list fields take several values.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

__all__ = ['TrainConfig', 'ConfigError', 'load_recipe', 'build_parser', 'parse_config']


class ConfigError(ValueError):
    """A recipe or command line that cannot be used; the message says what to change."""


@dataclass
class TrainConfig:
    """Every option of a training run; the defaults are the embedded digits run (``python train.py``)."""
    # data
    data_dir: str = ''  # ImageFolder root holding <train_split>/ and <val_split>/; '' uses the embedded dataset
    dataset: str = 'digits'  # 'digits' (scikit-learn, ships with the package) or 'folder'
    train_split: str = 'train'
    val_split: str = 'val'
    val_fraction: float = 0.2  # held-out share of the embedded dataset (stratified, fixed by data_seed)
    data_seed: int = 0
    on_corrupt: str = 'skip'  # corrupt image files: 'skip' (warn and count) or 'error'
    img_size: int = 16  # the digits are 8x8; ImageNet recipes set 224
    mean: Optional[list[float]] = None  # None: the model's pretrained_cfg
    std: Optional[list[float]] = None
    crop_pct: Optional[float] = None
    workers: int = 0  # loader worker processes (0: load in the training process)
    # augmentation (timm create_transform / Mixup)
    scale: list[float] = field(default_factory=lambda: [0.85, 1.0])
    ratio: list[float] = field(default_factory=lambda: [0.9, 1.1])
    hflip: float = 0.  # digits must not be mirrored; ImageNet recipes set 0.5
    color_jitter: float = 0.
    auto_augment: Optional[str] = None
    reprob: float = 0.
    train_interpolation: str = 'bilinear'
    mixup: float = 0.
    cutmix: float = 0.
    mixup_prob: float = 1.
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    # model
    model: str = 'ghostnet_050'
    num_classes: Optional[int] = None  # None: taken from the dataset
    pretrained: bool = False
    initial_checkpoint: str = ''
    drop: float = 0.
    drop_path: Optional[float] = None
    global_pool: Optional[str] = None  # timm's pooling option (ViT: 'token' or 'avg', as MAE / FastMIM fine-tune); None: the model's
    # optimisation (timm create_optimizer_v2 / create_scheduler_v2)
    epochs: int = 8
    batch_size: int = 32
    opt: str = 'adamw'
    lr: float = 3e-3
    weight_decay: float = 0.05
    layer_decay: Optional[float] = None  # layer-wise lr decay (fine-tuning; FastMIM's recipe: 0.7-0.8); None: off
    layer_decay_min_scale: float = 0.  # floor of the layer-wise lr scale (timm's min_scale)
    momentum: float = 0.9
    sched: str = 'cosine'  # 'cosine', 'step', 'multistep', ... (timm scheduler names)
    sched_on_updates: bool = True
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    min_lr: float = 1e-6
    decay_epochs: float = 30
    decay_rate: float = 0.1
    clip_grad: Optional[float] = None
    clip_mode: str = 'norm'
    accum_steps: int = 1
    # EMA (timm ModelEmaV3)
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    model_ema_warmup: bool = False
    # device and speed
    device: str = 'auto'  # 'auto', 'cpu', 'cuda', 'cuda:1', ...
    amp: bool = False  # mixed precision where the device supports it
    amp_dtype: str = 'bfloat16'  # 'bfloat16' or 'float16' (float16 uses a GradScaler)
    channels_last: bool = False
    compile: bool = False  # torch.compile the model
    threads: int = 1  # torch intra-op threads (small models gain nothing from more on a shared CPU); 0: torch's choice
    # distillation
    distill: str = 'none'  # 'none', 'kd' (temperature-scaled KL), 'soft_ce' (GhostNetV3's soft-target CE), 'ofa'
    teacher: str = ''
    teacher_checkpoint: str = ''
    teacher_pretrained: bool = False
    teacher_img_size: Optional[int] = None  # resize the teacher's input (e.g. 224 for a ViT teacher)
    gt_loss_weight: float = 1.
    kd_loss_weight: float = 1.
    kd_temperature: float = 1.
    ofa_stages: list[int] = field(default_factory=lambda: [-4, -3, -2, -1])  # student feature_info indices
    ofa_eps: list[float] = field(default_factory=lambda: [1.])  # one per stage plus one for the logits, or one
    ofa_temperature: float = 1.
    ofa_loss_weight: float = 1.
    # training paradigm: a name in zoo.train.paradigm.PARADIGMS (supervised, fastmim, gpt4image)
    paradigm: str = 'supervised'
    # FastMIM
    mim_mask_ratio: float = 0.75
    mim_mask_patch: int = 0  # side of a mask square in pixels; 0: the backbone's largest stride
    mim_target: str = 'hog'  # 'hog' (histograms of oriented gradients) or 'pixel'
    mim_hog_bins: int = 9
    mim_hog_cell: int = 8  # HOG cell side in pixels (must divide the backbone's largest stride)
    mim_norm_target: bool = True  # L2-normalise HOG cells / standardise pixel patches
    mim_decoder_dim: int = 0  # 0: sized to the backbone
    mim_decoder_depth: int = 1
    mim_sizes: list[int] = field(default_factory=list)  # FastMIM-P input sizes (<= img_size); empty: img_size
    mim_size_epochs: list[int] = field(default_factory=list)  # the epoch each of mim_sizes starts at (first 0)
    # GPT4Image
    text_embeddings: str = ''  # .safetensors / .npz from python -m zoo.train.embed_descriptions
    text_dim: int = 0  # expected embedding width (0: the file's)
    align_loss: str = 'contrastive'  # 'contrastive' (symmetric InfoNCE in the batch) or 'cosine'
    align_loss_weight: float = 1.
    align_temperature: float = 0.07
    # end of training
    reparameterize: bool = False  # fuse to the deploy form at the end and save model_deploy.pth
    push_to_hub: str = ''  # ORG/NAME: save <output>/hub (config.json, model.safetensors, card) and upload it
    hub_private: bool = False  # create the --push-to-hub repository private
    # run control
    output: str = ''  # run folder; '' makes runs/<time>-<model>-<dataset>
    resume: bool = False  # continue the run in --output (or the newest under runs/)
    overwrite: bool = False  # start over in an --output folder that holds a run
    evaluate: bool = False  # validation only
    checkpoint: str = ''  # the checkpoint --evaluate reads ('' : <output>/last.pth)
    seed: int = 42
    progress: bool = True  # tqdm bar per epoch
    max_steps_per_epoch: int = 0  # 0: the whole loader (a small number makes smoke tests fast)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_identity(cfg: TrainConfig | dict) -> dict[str, Any]:
    """The fields that make two configurations the same run (what --resume must match)."""
    d = cfg.to_dict() if isinstance(cfg, TrainConfig) else dict(cfg)
    identity = {k: d.get(k) for k in ('model', 'dataset', 'data_dir', 'num_classes', 'distill', 'teacher', 'img_size')}
    identity['paradigm'] = d.get('paradigm', 'supervised')  # runs written before paradigms were supervised
    return identity


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _unwrap_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0]
    return tp


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe; refuses keys that are not TrainConfig fields (a typo must not pass silently)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'recipe {path} does not exist (recipes live in configs/train/)')
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f'recipe {path} must be a mapping of option: value')
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(k for k in (k.replace('-', '_') for k in data) if k not in known)
    if unknown:
        raise ConfigError(f'recipe {path} has unknown option(s) {unknown}; see python train.py --help')
    return {k.replace('-', '_'): v for k, v in data.items()}


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``--config`` plus one flag per TrainConfig field (defaults left unset)."""
    parser = argparse.ArgumentParser(
        prog='train.py', description='Train or distil a zoo/timm model. With no arguments: the embedded digits run.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, argument_default=argparse.SUPPRESS)
    parser.add_argument('-c', '--config', default='', help='YAML recipe (configs/train/*.yaml); flags override it')
    defaults = TrainConfig()
    for name, tp in _field_types().items():
        flag = '--' + name.replace('_', '-')
        base = _unwrap_optional(tp)
        default = getattr(defaults, name)
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=f'(default: {default})')
        elif typing.get_origin(base) is list:
            (item,) = typing.get_args(base)
            parser.add_argument(flag, type=item, nargs='+', help=f'(default: {default})')
        else:
            parser.add_argument(flag, type=_optional(base), help=f'(default: {default})')
    return parser


def _optional(tp: type):
    def convert(text: str):
        if text.lower() in ('none', 'null'):
            return None
        return tp(text)
    convert.__name__ = tp.__name__
    return convert


def parse_config(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """Defaults (the embedded digits run), then the ``--config`` recipe, then the flags."""
    args = vars(build_parser().parse_args(argv))
    recipe = args.pop('config', '')
    values: dict[str, Any] = load_recipe(recipe) if recipe else {}
    values.update(args)
    return make_config(values)


def make_config(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a plain mapping, with types checked and lists normalised; options not given take the
    paradigm's defaults (:attr:`Paradigm.defaults <zoo.train.paradigm.Paradigm>`), then TrainConfig's."""
    from .paradigm import get_paradigm  # the paradigms' modules import this one

    types_ = _field_types()
    clean = {}
    values = {**get_paradigm(values.get('paradigm') or TrainConfig.paradigm).defaults, **values}
    if values.get('data_dir') and 'dataset' not in values:  # a data folder given means training on it
        values['dataset'] = 'folder'
    for k, v in values.items():
        if k not in types_:
            raise ConfigError(f'unknown option {k!r}')
        base = _unwrap_optional(types_[k])
        if v is not None and typing.get_origin(base) is list:
            v = list(v) if isinstance(v, (list, tuple)) else [v]
            (item,) = typing.get_args(base)
            v = [item(x) for x in v]
        elif v is not None and base in (int, float) and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = base(v)
        clean[k] = v
    cfg = TrainConfig(**clean)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Refuse contradictory or out-of-range options with one clear message."""
    from .distill import DISTILLATIONS  # the tables' modules import this one
    from .paradigm import get_paradigm

    if cfg.dataset not in ('digits', 'folder'):
        raise ConfigError(f"dataset must be 'digits' or 'folder', got {cfg.dataset!r}")
    if cfg.dataset == 'folder' and not cfg.data_dir:
        raise ConfigError('dataset folder needs --data-dir (a folder with train/ and val/ class folders)')
    if cfg.dataset == 'digits' and cfg.data_dir:
        raise ConfigError(f'--data-dir {cfg.data_dir} is not read with --dataset digits (the embedded set); '
                          f'drop --dataset digits (or pass --dataset folder) to train on the folder')
    _check_ranges(cfg)
    if cfg.opt.lower().split('_')[-1] not in _optimizers():
        raise ConfigError(f'--opt {cfg.opt!r} is not an optimizer timm knows; e.g. adamw, sgd, lamb, lion '
                          f'(timm.optim.list_optimizers() lists them)')
    if cfg.sched not in SCHEDULERS:
        raise ConfigError(f'--sched {cfg.sched!r} is not a scheduler; choose one of {", ".join(SCHEDULERS)}')
    if cfg.on_corrupt not in ('skip', 'error'):
        raise ConfigError(f"on_corrupt must be 'skip' or 'error', got {cfg.on_corrupt!r}")
    if cfg.distill != 'none' and cfg.distill not in DISTILLATIONS:
        raise ConfigError(f"distill must be one of none, {', '.join(DISTILLATIONS)}; got {cfg.distill!r}")
    if cfg.distill != 'none' and not cfg.teacher:
        raise ConfigError(f'distill {cfg.distill} needs --teacher NAME (and --teacher-checkpoint or '
                          f'--teacher-pretrained)')
    if cfg.resume and cfg.overwrite:
        raise ConfigError('--resume and --overwrite contradict each other; choose one')
    if cfg.accum_steps < 1 or cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError('epochs, batch_size and accum_steps must be >= 1')
    if (cfg.mixup > 0 or cfg.cutmix > 0) and cfg.batch_size % 2:
        raise ConfigError(f'mixup / cutmix pair samples within a batch: batch_size must be even, got {cfg.batch_size}')
    if not 0. < cfg.val_fraction < 1.:
        raise ConfigError('val_fraction must be between 0 and 1')
    if cfg.amp_dtype not in ('bfloat16', 'float16'):
        raise ConfigError(f"amp_dtype must be 'bfloat16' or 'float16', got {cfg.amp_dtype!r}")
    if cfg.distill == 'ofa' and len(cfg.ofa_eps) not in (1, len(cfg.ofa_stages) + 1):
        raise ConfigError(f'ofa_eps takes one value or one per stage plus one for the logits '
                          f'({len(cfg.ofa_stages) + 1}); got {len(cfg.ofa_eps)}')
    if cfg.push_to_hub and (cfg.push_to_hub.count('/') != 1 or not all(cfg.push_to_hub.split('/'))):
        raise ConfigError(f'--push-to-hub takes a Hub repository id ORG/NAME, got {cfg.push_to_hub!r}')
    if cfg.hub_private and not cfg.push_to_hub:
        raise ConfigError('--hub-private applies to --push-to-hub ORG/NAME; add it or drop --hub-private')
    paradigm = get_paradigm(cfg.paradigm)
    if paradigm.validate is not None:
        paradigm.validate(cfg)


#: timm's create_scheduler_v2 names
SCHEDULERS = ('cosine', 'tanh', 'step', 'multistep', 'plateau', 'poly', 'wsd', 'rsqrt', 'constant', 'none')

_INF = math.inf
#: numeric options and their allowed ranges (low, high, low included, high included); None values are skipped
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    'lr': (0, _INF, False, False), 'min_lr': (0, _INF, True, False), 'warmup_lr': (0, _INF, True, False),
    'weight_decay': (0, _INF, True, False), 'layer_decay': (0, 1, False, True),
    'layer_decay_min_scale': (0, 1, True, True), 'momentum': (0, 1, True, True),
    'decay_rate': (0, _INF, False, False),
    'decay_epochs': (0, _INF, False, False), 'warmup_epochs': (0, _INF, True, False),
    'clip_grad': (0, _INF, False, False), 'model_ema_decay': (0, 1, False, True),
    'img_size': (1, _INF, True, False), 'teacher_img_size': (1, _INF, True, False),
    'num_classes': (1, _INF, True, False), 'workers': (0, _INF, True, False), 'threads': (0, _INF, True, False),
    'max_steps_per_epoch': (0, _INF, True, False), 'smoothing': (0, 1, True, False), 'drop': (0, 1, True, False),
    'drop_path': (0, 1, True, False), 'crop_pct': (0, 1, False, True), 'hflip': (0, 1, True, True),
    'reprob': (0, 1, True, True), 'color_jitter': (0, _INF, True, False), 'mixup': (0, _INF, True, False),
    'cutmix': (0, _INF, True, False), 'mixup_prob': (0, 1, True, True), 'mixup_switch_prob': (0, 1, True, True),
    'gt_loss_weight': (0, _INF, True, False), 'kd_loss_weight': (0, _INF, True, False),
    'kd_temperature': (0, _INF, False, False), 'ofa_temperature': (0, _INF, False, False),
    'ofa_loss_weight': (0, _INF, True, False),
}


def _check_ranges(cfg: TrainConfig) -> None:
    """Refuse a numeric option that is NaN, infinite or out of its range, naming the flag and the range."""
    for name, (low, high, low_in, high_in) in _RANGES.items():
        v = getattr(cfg, name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f'--{name.replace("_", "-")} takes a number, got {v!r}')
        ok = math.isfinite(v) and (v >= low if low_in else v > low) and (v <= high if high_in else v < high)
        if not ok:
            lo = f'{"[" if low_in else "("}{low:g}'
            hi = f'{high:g}{"]" if high_in else ")"}' if high != _INF else 'inf)'
            raise ConfigError(f'--{name.replace("_", "-")} {v} is out of range: it takes a finite value in {lo}, {hi}')
    for name in ('scale', 'ratio', 'mean', 'std'):
        values = getattr(cfg, name) or []
        if any(not math.isfinite(v) or (v <= 0 and name != 'mean') for v in values):
            raise ConfigError(f'--{name} {values}: each value must be finite{"" if name == "mean" else " and > 0"}')


def _optimizers() -> set[str]:
    from timm.optim import list_optimizers
    return set(list_optimizers())
