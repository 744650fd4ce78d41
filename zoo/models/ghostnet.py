"""GhostNet V1 / V2 / V3, adopted from timm.

timm's ``ghostnet*`` models are the official architectures: the official checkpoints load through timm's
``checkpoint_filter_fn`` and give bit-identical outputs. The zoo does not write a second copy; it lists
them, records the official releases and pins the equivalence in ``tests/models/test_ghostnet.py`` with
fixtures computed from the official code.

Deploy form: ``timm.models.reparameterize_model(model)`` (GhostNetV3) fuses the re-parameterised branches
(timm's GhostNet calls it ``convert_to_deploy()``).
"""
from ..registry import adopt_timm_models

_RELEASES = 'https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download'

#: Official releases of the weights. timm serves the same weights (converted to its layout) from its
#: hub copies, which ``pretrained=True`` uses; these URLs load too through
#: ``pretrained_cfg_overlay=dict(url=URL, hf_hub_id=None)``.
OFFICIAL_URLS = {
    'ghostnet_100': 'https://github.com/huawei-noah/Efficient-AI-Backbones/raw/master/'
                    'ghostnet_pytorch/models/state_dict_73.98.pth',
    'ghostnetv2_100': f'{_RELEASES}/GhostNetV2/ck_ghostnetv2_10.pth.tar',
    'ghostnetv2_130': f'{_RELEASES}/GhostNetV2/ck_ghostnetv2_13.pth.tar',
    'ghostnetv2_160': f'{_RELEASES}/GhostNetV2/ck_ghostnetv2_16.pth.tar',
    'ghostnetv3_100': f'{_RELEASES}/GhostNetV3/ghostnetv3-1.0.pth.tar',
}

GHOSTNET_MODELS = (
    'ghostnet_050', 'ghostnet_100', 'ghostnet_130',
    'ghostnetv2_100', 'ghostnetv2_130', 'ghostnetv2_160',
    'ghostnetv3_050', 'ghostnetv3_100', 'ghostnetv3_130', 'ghostnetv3_160',
)

adopt_timm_models('ghostnet', GHOSTNET_MODELS, official_urls=OFFICIAL_URLS)
