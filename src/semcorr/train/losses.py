"""The training losses: distillation (the student's patch-to-patch similarity distribution should
match the teacher's) and refinement on known correspondences (soft-argmax, distance).

Distillation.
For a pair (A, B) with patches i of A and j of B, and L2-normalised features f:

    S[i, j]  = <f_A[i], f_B[j]>                        cosine similarities, (N_A, N_B)
    p[i, :]  = softmax(S_teacher[i, :] / T)             over B's patches (the classes are B's patches)
    loss     = mean_i  - sum_j p[i, j] log softmax(S_student[i, :] / T)[j]

The softmax is applied once per row, over the target axis (the official code applied it twice
and over the wrong axis, which its T = 0.001 compensated for; we use T = 0.01).

Refinement (``semcorr finetune-3d``), for a source point p with known target point q, both in grid
coordinates (cell centres at integers, :mod:`semcorr.geometry`):

    d        = student descriptor of A at p (bilinear, L2-normalised)
    w[j]     = softmax_j(beta * <d, f_B[j]>)               over all of B's cells j, beta ~ 1000
    q_hat    = sum_j w[j] * xy(j)                           soft-argmax: the expected cell position
    loss     = mean over points of || (q_hat - q) * scale ||   (Euclidean, in the units ``scale`` sets)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..matching.kernels import sample_descriptors, similarity_maps
from .config import DEFAULT_BETA, DEFAULT_TEMPERATURE


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


def distillation_loss(
    student_source: Tensor,
    student_target: Tensor,
    teacher_source: Tensor,
    teacher_target: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
) -> Tensor:
    """Cross-entropy of the student's similarity distribution against the teacher's.

    Args:
        student_source: (B, C, h, w) (or (B, N, C)) student features of A.
        student_target: the same of B.
        teacher_source: teacher features of A, with the same number of patches as the student's
            (channels may differ: 2048 against 768). No gradient flows into them.
        teacher_target: the same of B.
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
        raise ValueError(
            f"student similarities {tuple(student.shape)} and teacher's {tuple(teacher.shape)} differ: "
            "the two need the same patch grids"
        )
    target = torch.softmax(teacher / temperature, dim=-1)
    log_prediction = torch.log_softmax(student / temperature, dim=-1)
    return -(target * log_prediction).sum(dim=-1).mean()


def soft_argmax(similarity: Tensor, beta: float = DEFAULT_BETA) -> Tensor:
    """Expected cell position under ``softmax(beta * similarity)`` over every cell of each map.

    Unlike :func:`~semcorr.matching.window_soft_argmax` there is no window: the whole map weighs
    in, so the result is differentiable everywhere (the refinement loss needs that).

    Args:
        similarity: (B, N, h, w) similarity maps.
        beta: inverse temperature (about 1000 for cosine similarities: nearly an argmax).
    Returns:
        (B, N, 2) grid coordinates (x, y), cell centres at integers.

    Example:
        >>> soft_argmax(torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]]))   # the peak is cell (row 0, column 1)
        tensor([[[1., 0.]]])
    """
    if similarity.ndim != 4:
        raise ValueError(f"similarity must be (B, N, h, w), got shape {tuple(similarity.shape)}")
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    height, width = similarity.shape[-2:]
    weights = torch.softmax(beta * similarity.flatten(2), dim=-1).view_as(similarity)
    xs = torch.arange(width, device=similarity.device, dtype=similarity.dtype)
    ys = torch.arange(height, device=similarity.device, dtype=similarity.dtype)
    x = (weights.sum(dim=-2) * xs).sum(dim=-1)
    y = (weights.sum(dim=-1) * ys).sum(dim=-1)
    return torch.stack((x, y), dim=-1)


def refinement_loss(
    source_features: Tensor,
    target_features: Tensor,
    source_points: Tensor,
    target_points: Tensor,
    *,
    beta: float = DEFAULT_BETA,
    scale: Tensor | None = None,
    valid: Tensor | None = None,
) -> Tensor:
    """Mean distance between the soft-argmax match of each source point and its true target point.

    Args:
        source_features: (B, C, h, w) features of the source images (L2-normalised here).
        target_features: (B, C, h', w') features of the target images.
        source_points: (B, N, 2) source points in grid coordinates of the source grid.
        target_points: (B, N, 2) their true positions in grid coordinates of the target grid.
        beta: inverse temperature of the soft-argmax.
        scale: (B, 2) units per grid cell along x and y in which distances are measured (e.g.
            target-image pixels per cell divided by its longer side); ``None``: grid cells.
        valid: (B, N) bool, False for padding rows; ``None``: every row counts.
    Returns:
        scalar: the Euclidean distances averaged over the valid points of the batch (0 if none).

    Example:
        >>> f = torch.nn.functional.one_hot(torch.arange(4)).T.reshape(1, 4, 2, 2).float()   # 4 distinct cells
        >>> p = torch.tensor([[[1.0, 0.0]]])
        >>> refinement_loss(f, f, p, p)   # every cell is its own best match: no error
        tensor(0.)
    """
    if source_features.ndim != 4 or target_features.ndim != 4:
        raise ValueError(
            f"features must be (B, C, h, w), got {tuple(source_features.shape)} and {tuple(target_features.shape)}"
        )
    if source_points.ndim != 3 or source_points.shape[-1] != 2 or source_points.shape != target_points.shape:
        raise ValueError(
            f"source_points and target_points must both be (B, N, 2), got {tuple(source_points.shape)} "
            f"and {tuple(target_points.shape)}"
        )
    descriptors = sample_descriptors(F.normalize(source_features.float(), dim=1), source_points.float())
    similarity = similarity_maps(descriptors, F.normalize(target_features.float(), dim=1))
    error = soft_argmax(similarity, beta) - target_points.float()
    if scale is not None:
        error = error * scale.to(error)[:, None, :]
    distance = torch.linalg.vector_norm(error, dim=-1)  # (B, N)
    if valid is None:
        return distance.mean()
    mask = valid.to(distance.device, torch.bool)
    return (distance * mask).sum() / mask.sum().clamp(min=1)
