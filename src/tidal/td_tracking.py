"""Figure 7 of the paper (§5.4): how well the TD prediction module predicts the training dynamics.

While a cycle trains, after every epoch ``t`` the test-set softmax ``p(t)`` and the module's
predicted TD ``p̃_m(t)`` are recorded; at the end, the actual TD of the test samples is
``p̄(T) = mean_t p(t)`` (Eq. 5) and each epoch gets the test-set means of
``KL(p̄(T) || p̃_m(t))`` and ``KL(p̄(T) || p(t))``. :class:`TDTracker` is the ``train_model``
epoch hook; :class:`TDTrackerFactory` gives ``active_learning`` one per cycle
(``run_experiment(track_td=True)``, ``tidal run --track-td``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing

import torch
import torch.nn.functional as F
from torch import nn

from tidal.data import Split
from tidal.inference import batched_outputs
from tidal.results import EpochKL
from tidal.strategies import AuxObjective

__all__ = ["TDTracker", "TDTrackerFactory", "kl_to_final_td"]

# -- Figure 7: how well the module predicts the TD ----------------------------------------------

_TINY = torch.finfo(torch.float32).tiny  # floor of a predicted probability before its log (keeps KL finite)


def kl_to_final_td(log_snapshot: Sequence[torch.Tensor],
                   log_predicted: Sequence[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Figure 7's two curves from per-epoch log-probabilities of the same ``N`` samples.

    Args:
        log_snapshot: ``T`` tensors ``[N, C]``, ``log p(t)`` after epochs ``t = 1..T``.
        log_predicted: ``T`` tensors ``[N, C]``, ``log p̃_m(t)`` after the same epochs.
    Returns:
        ``(kl_module, kl_snapshot)``, ``T`` floats each, in nats: the means over the ``N``
        samples of ``KL(p̄(T) || p̃_m(t))`` and ``KL(p̄(T) || p(t))``, where the actual TD is
        ``p̄(T) = (1/T) sum_t p(t)`` (Eq. 5 with ``Δτ = 1/T``) and ``0 log 0 = 0``.
    """
    if len(log_snapshot) != len(log_predicted) or not log_snapshot:
        raise ValueError(f"need the same non-zero number of epochs; got {len(log_snapshot)} snapshot and "
                         f"{len(log_predicted)} predicted")
    p_bar = sum(lp.double().exp() for lp in log_snapshot) / len(log_snapshot)  # [N, C]
    neg_entropy = torch.xlogy(p_bar, p_bar).sum(dim=1)  # sum_c p̄ log p̄, [N]

    def mean_kl(log_q: torch.Tensor) -> float:
        cross = torch.where(p_bar > 0, p_bar * log_q.double(), torch.zeros_like(p_bar)).sum(dim=1)
        return float((neg_entropy - cross).mean())

    return [mean_kl(q) for q in log_predicted], [mean_kl(p) for p in log_snapshot]


class TDTracker:
    """A ``train_model`` epoch hook recording Figure 7's inputs on a held-out split (the test set).

    After each epoch it runs the model in eval mode over all of ``dataset`` (one inference
    pass, :func:`~tidal.inference.batched_outputs`) and keeps ``log p(t)`` (log-softmax of the
    logits) and ``log p̃_m(t)`` (log of ``objective.predict(out)["td"]``, floored at the
    smallest float32) on the CPU. ``p̄(T)`` is known only when training ends, so every epoch's
    outputs are needed: memory is ``2 x epochs x N x C x 4`` bytes (FashionMNIST's 10,000 test
    images, 10 classes: 32 MB for the quick preset's 40 epochs, 80 MB for the paper's 100),
    held until :meth:`result` is read and the tracker dropped; nothing stays on the GPU.

    An objective without a ``"td"`` prediction (or no objective) is recognised on the first
    batch; the tracker then records nothing. The model's and objective's modes are restored
    and no random generator is used, so tracking changes no number of the run.
    """

    def __init__(self, dataset: Split, batch_size: int = 1024) -> None:
        self.dataset = dataset  # on the training device
        self.batch_size = batch_size
        self.active = True  # False once the objective turned out not to predict "td"
        self.epochs: list[int] = []  # 1-based epochs recorded
        self._log_snapshot: list[torch.Tensor] = []  # [N, C] each, CPU float32
        self._log_predicted: list[torch.Tensor] = []

    @torch.no_grad()
    def __call__(self, epoch: int, model: nn.Module, objective: AuxObjective | None) -> None:
        if not self.active or objective is None:
            self.active = False
            return
        snapshot, predicted = [], []
        was_training = objective.training
        objective.eval()
        try:
            indices = torch.arange(len(self.dataset))
            with closing(batched_outputs(model, self.dataset, indices, self.batch_size)) as batches:
                for _, out in batches:
                    td = objective.predict(out).get("td")
                    if td is None:
                        self.active = False
                        return
                    snapshot.append(F.log_softmax(out.logits.float(), dim=1).cpu())
                    predicted.append(td.float().clamp_min(_TINY).log().cpu())
        finally:
            objective.train(was_training)
        self.epochs.append(epoch + 1)
        self._log_snapshot.append(torch.cat(snapshot))
        self._log_predicted.append(torch.cat(predicted))

    def result(self) -> list[EpochKL]:
        """One :class:`~tidal.results.EpochKL` per recorded epoch (empty when nothing was recorded)."""
        if not self.epochs:
            return []
        kl_module, kl_snapshot = kl_to_final_td(self._log_snapshot, self._log_predicted)
        return [EpochKL(e, m, s) for e, m, s in zip(self.epochs, kl_module, kl_snapshot)]


class TDTrackerFactory:
    """``active_learning``'s ``epoch_hooks`` for Figure 7: a fresh :class:`TDTracker` over
    ``dataset`` for each cycle; :meth:`take` hands back a cycle's rows and frees its arrays."""

    def __init__(self, dataset: Split, batch_size: int = 1024) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self._trackers: dict[int, TDTracker] = {}

    def __call__(self, cycle: int) -> TDTracker:
        self._trackers[cycle] = TDTracker(self.dataset, self.batch_size)
        return self._trackers[cycle]

    def take(self, cycle: int) -> list[EpochKL]:
        """The per-epoch KLs of ``cycle`` (empty for a method without predicted TD)."""
        tracker = self._trackers.pop(cycle, None)
        return [] if tracker is None else tracker.result()
