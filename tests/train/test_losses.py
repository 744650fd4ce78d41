"""Distillation losses against their definitions."""
import torch
import torch.nn.functional as F

from zoo.train.losses import hard_targets, kd_kl_loss, ofa_loss, soft_target_ce_loss


def test_kd_kl_loss_definition():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    T = 3.
    p_t = F.softmax(t / T, -1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert torch.allclose(kd_kl_loss(s, t, T), expected, atol=1e-6)
    assert kd_kl_loss(t, t, T).abs() < 1e-6


def test_soft_target_ce_is_kl_plus_teacher_entropy():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    p_t = F.softmax(t, -1)
    entropy = -(p_t * p_t.log()).sum(-1).mean()
    assert torch.allclose(soft_target_ce_loss(s, t), kd_kl_loss(s, t) + entropy, atol=1e-5)


def test_ofa_loss_target_enhancement():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    y = torch.tensor([1, 2, 3, 4])
    mask = hard_targets(y, 10)
    # eps = 1: plain soft-target cross-entropy
    assert torch.allclose(ofa_loss(s, t, mask, eps=1.), soft_target_ce_loss(s, t), atol=1e-5)
    # eps > 1: the true class's weight (1 + p)^eps - 1 exceeds p, the others shrink to p^eps
    p_t = F.softmax(t, -1)
    eps = 1.5
    target = p_t ** eps
    target[range(4), y] = (1 + p_t[range(4), y]) ** eps - 1
    expected = -(target * F.log_softmax(s, -1)).sum(-1).mean()
    assert torch.allclose(ofa_loss(s, t, mask, eps=eps), expected, atol=1e-5)
    assert (target[range(4), y] > p_t[range(4), y]).all() and (target <= p_t + 1e-7).sum() >= 4 * 9


def test_hard_targets_of_soft_labels():
    soft = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    assert torch.equal(hard_targets(soft, 3), torch.tensor([[0., 1., 0.], [1., 0., 0.]]))
