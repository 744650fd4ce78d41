"""SLAB's PRepBN blend under the training engine's step hook: a run shorter than the official schedule gets
the whole schedule compressed into its first 80%; a run covering it follows it step for step."""
import pytest
import torch.nn as nn

from zoo.layers.prepbn import PRepBN
from zoo.models.slab.common import SHORT_RUN_BLEND_END, SlabMixin


class _Tiny(SlabMixin, nn.Module):
    def __init__(self, blend_steps: int, warmup_steps: int = 0):
        super().__init__()
        self.norms = nn.ModuleList(PRepBN(4, blend_steps=blend_steps, warmup_steps=warmup_steps) for _ in range(2))


def _ln_weight(model, step, total):
    model.on_train_step(step, total)
    weights = {m.ln_weight for m in model.norms}
    assert len(weights) == 1
    return weights.pop()


def test_a_short_run_blends_fully_to_repbn_by_80_percent():
    model = _Tiny(blend_steps=300000)
    assert _ln_weight(model, 0, 135) == 1.
    assert _ln_weight(model, 54, 135) == pytest.approx(0.5, abs=0.01)  # halfway through the first 108 steps
    assert _ln_weight(model, int(135 * SHORT_RUN_BLEND_END), 135) == 0.
    assert _ln_weight(model, 134, 135) == 0.  # the last steps train the RepBN that eval mode uses


def test_a_run_covering_the_schedule_follows_it_step_for_step():
    model = _Tiny(blend_steps=1000, warmup_steps=100)
    assert _ln_weight(model, 50, 5000) is None  # LayerNorm-only warm-up
    assert _ln_weight(model, 600, 5000) == pytest.approx(0.5)
    assert _ln_weight(model, 1100, 5000) == 0.
    assert _ln_weight(model, 600, 0) == pytest.approx(0.5)  # total unknown: the official schedule


def test_the_short_run_warm_up_is_compressed_too():
    model = _Tiny(blend_steps=900, warmup_steps=100)  # 1000 schedule steps in 80 run steps
    assert _ln_weight(model, 7, 100) is None and _ln_weight(model, 8, 100) == 1.
