"""Row-wise similarity of two batches of explanations (torch versions of Quantus's ``similarity_func``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pearson(u: Tensor, v: Tensor) -> Tensor:
    """Pearson correlation of each row pair of (N, D) tensors; NaN for a constant row (as scipy)."""
    u = u.double() - u.double().mean(-1, keepdim=True)
    v = v.double() - v.double().mean(-1, keepdim=True)
    return (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))


def average_ranks(u: Tensor) -> Tensor:
    """Ranks 1..D of each row, ties sharing their mean rank (scipy.stats.rankdata 'average')."""
    n, d = u.shape
    sorted_u, order = torch.sort(u, dim=-1, stable=True)
    new_group = torch.ones_like(sorted_u, dtype=torch.long)
    new_group[:, 1:] = (sorted_u[:, 1:] != sorted_u[:, :-1]).long()
    group = new_group.cumsum(-1) - 1 + torch.arange(n, device=u.device).unsqueeze(1) * d
    position = torch.arange(1, d + 1, device=u.device, dtype=torch.float64).expand(n, d)
    total = torch.zeros(n * d, dtype=torch.float64, device=u.device)
    total = total.index_add_(0, group.reshape(-1), position.reshape(-1))
    count = torch.zeros(n * d, dtype=torch.float64, device=u.device).index_add_(
        0, group.reshape(-1), torch.ones(n * d, dtype=torch.float64, device=u.device)
    )
    mean_rank = (total / count.clamp(min=1))[group]
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(u: Tensor, v: Tensor) -> Tensor:
    """Spearman rank correlation of each row pair (average ranks for ties, as scipy)."""
    return pearson(average_ranks(u), average_ranks(v))


def ssim(u: Tensor, v: Tensor, *, win_size: int = 7, spatial_dims: int = 2) -> Tensor:
    """Mean SSIM per sample, equal to ``skimage.metrics.structural_similarity`` with
    ``data_range = max(u, v) - min(u, v)`` of the pair, a uniform ``win_size`` window, sample
    covariance, K1 = 0.01, K2 = 0.03; skimage's crop of the border equals a 'valid' window.

    ``u``, ``v``: (N, H, W) for ``spatial_dims=2``, (N, D) for ``spatial_dims=1``.
    """
    u, v = u.double(), v.double()
    n = u.shape[0]
    both = torch.cat([u.reshape(n, -1), v.reshape(n, -1)], dim=1)
    data_range = (both.amax(-1) - both.amin(-1)).view(n, *([1] * spatial_dims))
    pool = F.avg_pool2d if spatial_dims == 2 else F.avg_pool1d

    def mean(t: Tensor) -> Tensor:
        return pool(t.unsqueeze(1), win_size, stride=1).squeeze(1)

    ux, uy = mean(u), mean(v)
    uxx, uyy, uxy = mean(u * u), mean(v * v), mean(u * v)
    cov_norm = win_size**spatial_dims / (win_size**spatial_dims - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.reshape(n, -1).mean(-1)
