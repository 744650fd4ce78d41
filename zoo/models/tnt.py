"""TNT (Transformer in Transformer), adopted from timm.

timm's ``tnt_s_patch16_224`` / ``tnt_b_patch16_224`` are the official architectures (arXiv:2103.00112;
official code: huawei-noah/Efficient-AI-Backbones ``tnt_pytorch/tnt.py``) under other parameter names:
official checkpoints load through timm's ``checkpoint_filter_fn``, which renames the keys
(``outer_pos`` -> ``patch_pos``, ``inner_pos`` -> ``pixel_pos`` reshaped to (1, C, 4, 4),
``patch_embed`` -> ``pixel_embed``, ``inner_*`` / ``outer_*`` block parts -> ``*_in`` / ``norm_out``,
``attn_out``, ``norm_mlp``, ``mlp``) and drops the official ``outer_tokens`` buffer (a frozen, unused
parameter). ``tests/models/test_tnt.py`` pins the equivalence with fixtures computed from the official code.

PyramidTNT, the four-stage successor, is the zoo's own ``pyramid_tnt`` family.
"""
from ..registry import adopt_timm_models

_RELEASES = 'https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download'

#: Official releases of the weights (raw state dicts in the official layout). timm serves the same
#: weights converted to its layout from its hub copies, which ``pretrained=True`` uses; these URLs load
#: too through ``pretrained_cfg_overlay=dict(url=URL, hf_hub_id=None)``.
OFFICIAL_URLS = {
    'tnt_s_patch16_224': f'{_RELEASES}/tnt/tnt_s_81.5.pth.tar',
    'tnt_b_patch16_224': f'{_RELEASES}/tnt/tnt_b_82.9.pth.tar',
}

TNT_MODELS = ('tnt_s_patch16_224', 'tnt_b_patch16_224')

# timm's TNT is fixed to its 224 training size, so the contract exercises it there.
adopt_timm_models('tnt', TNT_MODELS, official_urls=OFFICIAL_URLS, contract_input_size=(3, 224, 224))
