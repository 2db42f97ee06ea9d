"""The distillation loss: the student's patch-to-patch similarity distribution should match the
teacher's.

For a pair (A, B) with patches i of A and j of B, and L2-normalised features f:

    S[i, j]  = <f_A[i], f_B[j]>                        cosine similarities, (N_A, N_B)
    p[i, :]  = softmax(S_teacher[i, :] / T)             over B's patches (the classes are B's patches)
    loss     = mean_i  - sum_j p[i, j] log softmax(S_student[i, :] / T)[j]

The softmax is applied once per row, over the target axis (the official code applied it twice
and over the wrong axis, which its T = 0.001 compensated for; we use T = 0.01).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_TEMPERATURE = 0.01


def _tokens(features: Tensor, name: str) -> Tensor:
    """(B, C, h, w) or (B, N, C) -> (B, N, C), L2-normalised over C."""
    if features.ndim == 4:
        features = features.flatten(2).transpose(1, 2)
    elif features.ndim != 3:
        raise ValueError(f"{name} must be (B, C, h, w) or (B, N, C), got shape {tuple(features.shape)}")
    return F.normalize(features.float(), dim=-1)


def similarity(source: Tensor, target: Tensor) -> Tensor:
    """Cosine similarities of every source patch with every target patch.

    Args:
        source: (B, C, h, w) or (B, N_A, C) features of the source images.
        target: (B, C, h', w') or (B, N_B, C) features of the target images (same C).
    Returns:
        (B, N_A, N_B) float32, in [-1, 1].
    """
    a, b = _tokens(source, "source"), _tokens(target, "target")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ValueError(f"source {tuple(a.shape)} and target {tuple(b.shape)} need the same batch and channels")
    return a @ b.transpose(1, 2)


def distillation_loss(student_source: Tensor, student_target: Tensor, teacher_source: Tensor,
                      teacher_target: Tensor, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Cross-entropy of the student's similarity distribution against the teacher's.

    Args:
        student_source, student_target: (B, C, h, w) (or (B, N, C)) student features of A and B.
        teacher_source, teacher_target: teacher features of A and B, with the same number of patches
            as the student's (channels may differ: 2048 against 768). No gradient flows into them.
        temperature: T of both softmaxes.
    Returns:
        scalar: the cross-entropy averaged over A's patches and the batch.

    Example:
        >>> s = torch.randn(1, 8, 3, 3); t = torch.randn(1, 16, 3, 3)
        >>> distillation_loss(s, s, t, t).shape
        torch.Size([])
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    student = similarity(student_source, student_target)
    with torch.no_grad():
        teacher = similarity(teacher_source, teacher_target)
    if student.shape != teacher.shape:
        raise ValueError(f"student similarities {tuple(student.shape)} and teacher's {tuple(teacher.shape)} differ: "
                         "the two need the same patch grids")
    target = torch.softmax(teacher / temperature, dim=-1)
    log_prediction = torch.log_softmax(student / temperature, dim=-1)
    return -(target * log_prediction).sum(dim=-1).mean()
