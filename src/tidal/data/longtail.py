"""Long-tailed subsampling of a balanced training set (Cao et al. 2019; paper §5.1).

With imbalance ratio IR = N_max / N_min, class ``c`` (of ``C``) keeps
``floor(N_max * IR ** (-c / (C - 1)))`` samples: an exponential profile from the head
class 0 to the tail class C-1. The test set is never subsampled.
"""

from __future__ import annotations

import math

import torch

__all__ = ["longtail_counts", "longtail_indices"]


def longtail_counts(n_max: int, num_classes: int, imbalance: float) -> list[int]:
    """Samples kept per class: ``[n_max * imbalance ** (-c / (C - 1)) for c in range(C)]``."""
    if not imbalance >= 1:
        raise ValueError(f"imbalance={imbalance!r} must be >= 1 (1 = balanced, 10 or 100 as in the paper)")
    if num_classes == 1:
        return [n_max]
    return [max(1, int(math.floor(n_max * imbalance ** (-c / (num_classes - 1)) + 1e-9))) for c in range(num_classes)]


def longtail_indices(labels: torch.Tensor, imbalance: float, generator: torch.Generator,
                     num_classes: int | None = None) -> torch.Tensor:
    """Absolute indices (sorted, int64 ``[M]``) of a long-tailed subset of ``labels`` (int64 ``[N]``).

    ``N_max`` is the size of the smallest class, so every class can supply its quota.
    ``imbalance == 1`` returns every index. Which samples a class keeps is random under
    ``generator``. ``num_classes`` is ``C`` (default: ``labels.max() + 1``); pass the split's
    ``num_classes`` so that a class with no sample is noticed rather than dropped.
    """
    labels = labels.cpu()
    explicit = num_classes is not None
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    elif bool((labels >= num_classes).any()):
        raise ValueError(f"labels go up to {int(labels.max())} but num_classes={num_classes}; "
                         "pass the split's num_classes")
    if imbalance == 1:
        longtail_counts(1, num_classes, imbalance)  # validates
        return torch.arange(len(labels))
    if bool((labels < 0).any()):
        raise ValueError(f"labels hold {int((labels < 0).sum())} unlabelled (-1) samples; long-tailed subsampling "
                         f"at imbalance={imbalance} needs every training label: label them, or use imbalance 1")
    per_class = torch.bincount(labels, minlength=num_classes)
    if explicit and int(per_class.min()) == 0:
        empty = torch.nonzero(per_class == 0).flatten().tolist()
        raise ValueError(f"classes {empty[:10]} have no training sample, so no long-tailed profile over "
                         f"{num_classes} classes exists; use imbalance 1 or drop those classes")
    counts = longtail_counts(int(per_class.min()), num_classes, imbalance)
    keep = []
    for c, n in enumerate(counts):
        members = torch.nonzero(labels == c).flatten()
        keep.append(members[torch.randperm(len(members), generator=generator)[:n]])
    return torch.sort(torch.cat(keep)).values
