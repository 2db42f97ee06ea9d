"""The distillation loss: a hand-computed value, and the softmax over the target patches."""

from __future__ import annotations

import math

import pytest
import torch

from semcorr.train.losses import distillation_loss, similarity


def _features(vectors):
    """(N, C) rows -> (1, N, C) tokens."""
    return torch.tensor(vectors, dtype=torch.float32)[None]


class TestDistillationLoss:
    def test_hand_computed_value(self):
        # A has 2 patches, B has 3; unit vectors in 2-D. Temperature 1 keeps the numbers readable.
        a = _features([[1, 0], [0, 1]])
        b = _features([[1, 0], [0, 1], [-1, 0]])
        teacher_a, teacher_b = a, b  # S_t = [[1, 0, -1], [0, 1, 0]]
        student_a, student_b = _features([[0, 1], [1, 0]]), b  # S_s = [[0, 1, 0], [1, 0, -1]]
        p = [
            [
                math.e / (math.e + 1 + 1 / math.e),
                1 / (math.e + 1 + 1 / math.e),
                (1 / math.e) / (math.e + 1 + 1 / math.e),
            ],
            [1 / (2 + math.e), math.e / (2 + math.e), 1 / (2 + math.e)],
        ]
        log_q = [
            [-math.log(2 + math.e) + s for s in (0, 1, 0)],
            [-math.log(math.e + 1 + 1 / math.e) + s for s in (1, 0, -1)],
        ]
        expected = -sum(p[i][j] * log_q[i][j] for i in range(2) for j in range(3)) / 2
        loss = distillation_loss(student_a, student_b, teacher_a, teacher_b, temperature=1.0)
        assert loss.item() == pytest.approx(expected, rel=1e-6)

    def test_softmax_is_over_the_target_patches(self):
        # 3 source patches, 4 target patches: each source patch's distribution is over B's patches.
        torch.manual_seed(0)
        sa, sb, ta, tb = torch.randn(1, 3, 5), torch.randn(1, 4, 5), torch.randn(1, 3, 7), torch.randn(1, 4, 7)
        temperature = 0.5
        loss = distillation_loss(sa, sb, ta, tb, temperature=temperature)
        s = similarity(sa, sb)[0] / temperature  # (3, 4)
        t = similarity(ta, tb)[0] / temperature
        rows = []
        for i in range(3):  # one classification problem per source patch, the classes are B's patches
            p = torch.exp(t[i]) / torch.exp(t[i]).sum()
            rows.append(-(p * (s[i] - torch.logsumexp(s[i], 0))).sum())
        assert loss.item() == pytest.approx(torch.stack(rows).mean().item(), rel=1e-5)
        wrong_axis = -(torch.softmax(t, 0) * torch.log_softmax(s, 0)).sum(0).mean()
        twice = -(torch.softmax(torch.softmax(t, 1), 1) * torch.log_softmax(torch.softmax(s, 1), 1)).sum(1).mean()
        assert abs(loss.item() - wrong_axis.item()) > 1e-2
        assert abs(loss.item() - twice.item()) > 1e-2

    def test_loss_is_smallest_when_student_equals_teacher_and_grads_reach_only_the_student(self):
        torch.manual_seed(1)
        teacher_a, teacher_b = torch.randn(1, 8, 3, 3), torch.randn(1, 8, 3, 3)
        student_a = teacher_a.clone().requires_grad_(True)
        same = distillation_loss(student_a, teacher_b, teacher_a, teacher_b, temperature=0.1)
        other = distillation_loss(torch.randn(1, 8, 3, 3), teacher_b, teacher_a, teacher_b, temperature=0.1)
        assert same < other
        same.backward()
        assert student_a.grad is not None and torch.isfinite(student_a.grad).all()

    def test_channels_may_differ_between_teacher_and_student_but_not_patches(self):
        loss = distillation_loss(
            torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4), torch.randn(2, 64, 4, 4), torch.randn(2, 64, 4, 4)
        )
        assert loss.ndim == 0 and torch.isfinite(loss)
        with pytest.raises(ValueError, match="patch grids"):
            distillation_loss(
                torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4), torch.randn(1, 16, 3, 3), torch.randn(1, 16, 3, 3)
            )
        with pytest.raises(ValueError, match="temperature"):
            distillation_loss(
                torch.randn(1, 4, 2, 2),
                torch.randn(1, 4, 2, 2),
                torch.randn(1, 4, 2, 2),
                torch.randn(1, 4, 2, 2),
                temperature=0,
            )
