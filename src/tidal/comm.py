"""Where a cycle runs: :class:`Comm`, what training, the loop and a run ask of it (who writes,
which piece of a batch this process trains, what is shared, evaluation and selection). The base
class is one process, passing through to the single-process functions (:data:`LOCAL`);
:class:`tidal.distributed.Ranks` is the same interface over torchrun's processes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

if TYPE_CHECKING:
    from tidal.data.dataset import Split
    from tidal.dynamics import TrainingDynamics
    from tidal.embedstore import StoreSpec
    from tidal.gather import ScoringPass
    from tidal.strategies.base import Strategy

__all__ = ["Comm", "LOCAL", "Local"]

T = TypeVar("T")
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]  # (ids [b], inputs [b, ...]) per training batch


class Comm:
    """What a cycle needs from where it runs. This base is one process: nothing is shared and
    everything runs here (the single-process functions); :class:`tidal.distributed.Ranks`
    overrides every method for torchrun's processes."""

    rank: int  # this process's place among world_size
    world_size: int  # processes that train one run together

    @property
    def is_main(self) -> bool:
        """The process that writes the results and shows progress."""
        return self.rank == 0

    def close(self) -> None:
        """Leave the group (nothing to leave alone)."""

    def from_main(self, fn: Callable[[], T], share: bool = True) -> T | None:
        """``fn()`` on the main process; every process returns its result (``share=False``: the
        main one alone) or raises its error."""
        return fn()

    def main_first(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the main process, then on the others (e.g. the main one downloads)."""
        return fn()

    def shard(self, batches: Batches) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """This process's piece of each batch, ``(ids, inputs, share)``; ``share`` weighs its mean loss."""
        return ((ids, x, 1.0) for ids, x in batches)

    def reduce_grads(self, params: Sequence[nn.Parameter]) -> None:
        """Average the gradients of ``params`` over the processes."""

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over the processes."""
        return value

    def snapshot(self, records: Sequence["TrainingDynamics"]) -> list[torch.Tensor]:
        """What :meth:`sync_records` compares with after an epoch."""
        return []

    def sync_records(self, records: Sequence["TrainingDynamics"], before: Sequence[torch.Tensor]) -> None:
        """Give every process the per-sample rows the others updated since ``before``."""

    def sync_buffers(self, modules: Iterable[nn.Module | None]) -> None:
        """Average batch norm's running statistics over the processes."""

    def broadcast(self, modules: Iterable[nn.Module | None]) -> None:
        """The main process's weights into every process's ``modules``."""

    def evaluate(self, model: nn.Module, dataset: "Split", batch_size: int = 1024) -> float:
        """Test accuracy: :func:`tidal.inference.evaluate`."""
        from tidal.inference import evaluate

        return evaluate(model, dataset, batch_size)

    def select(self, strategy: "Strategy", scoring: "ScoringPass", chunk_size: int | None = None, *,
               store: "StoreSpec | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids [k], scores [k])``, best first: :func:`tidal.gather.select`."""
        from tidal.gather import select

        return select(strategy, scoring, chunk_size, store=store)


class Local(Comm):
    """One process."""

    rank = 0  # the only process
    world_size = 1  # alone


LOCAL = Local()  # the one-process Comm every call defaults to
