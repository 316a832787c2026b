"""Where a cycle runs: the one interface training, the loop and a run need from it.

:class:`Comm` is what a cycle asks of "where it runs": who writes (``is_main``), which piece
of each batch this process trains (``shard``), how gradients, losses, per-sample records and
batch-norm statistics are shared (``reduce_grads``, ``mean``, ``sync_records``,
``sync_buffers``, ``broadcast``), evaluation and selection (``evaluate``, ``select``) and
running a step once for everyone (``from_main``, ``main_first``). :class:`Local` is one
process: every method passes through to the single-process functions.
:class:`tidal.distributed.Ranks` is the same interface over torchrun's ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

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


class Comm(Protocol):
    """What a cycle needs from where it runs (one process, or torchrun's ranks)."""

    rank: int  # this process's place, 0 for one process
    world_size: int  # processes that train one run together

    @property
    def is_main(self) -> bool: ...  # writes the results and shows progress

    def from_main(self, fn: Callable[[], T], share: bool = True) -> T | None: ...

    def main_first(self, fn: Callable[[], T]) -> T: ...

    def close(self) -> None: ...

    def shard(self, batches: Batches) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]: ...

    def reduce_grads(self, params: Sequence[nn.Parameter]) -> None: ...

    def mean(self, value: torch.Tensor) -> torch.Tensor: ...

    def snapshot(self, records: Sequence["TrainingDynamics"]) -> list[torch.Tensor]: ...

    def sync_records(self, records: Sequence["TrainingDynamics"], before: Sequence[torch.Tensor]) -> None: ...

    def sync_buffers(self, modules: Iterable[nn.Module | None]) -> None: ...

    def broadcast(self, modules: Iterable[nn.Module | None]) -> None: ...

    def evaluate(self, model: nn.Module, dataset: "Split", batch_size: int = 1024) -> float: ...

    def select(self, strategy: "Strategy", scoring: "ScoringPass", chunk_size: int | None = None, *,
               store: "StoreSpec | None" = None) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class Local:
    """One process: nothing is shared, everything runs here (the single-process functions)."""

    rank: int = 0  # the only process
    world_size: int = 1  # alone

    @property
    def is_main(self) -> bool:
        return True

    def from_main(self, fn: Callable[[], T], share: bool = True) -> T | None:
        """``fn()``: this process is the main one."""
        return fn()

    def main_first(self, fn: Callable[[], T]) -> T:
        return fn()

    def shard(self, batches: Batches) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """Every batch whole, with loss weight 1."""
        return ((ids, x, 1.0) for ids, x in batches)

    def reduce_grads(self, params: Sequence[nn.Parameter]) -> None:
        pass

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def snapshot(self, records: Sequence["TrainingDynamics"]) -> list[torch.Tensor]:
        return []

    def sync_records(self, records: Sequence["TrainingDynamics"], before: Sequence[torch.Tensor]) -> None:
        pass

    def sync_buffers(self, modules: Iterable[nn.Module | None]) -> None:
        pass

    def broadcast(self, modules: Iterable[nn.Module | None]) -> None:
        pass

    def evaluate(self, model: nn.Module, dataset: "Split", batch_size: int = 1024) -> float:
        """:func:`tidal.inference.evaluate`."""
        from tidal.inference import evaluate

        return evaluate(model, dataset, batch_size)

    def select(self, strategy: "Strategy", scoring: "ScoringPass", chunk_size: int | None = None, *,
               store: "StoreSpec | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`tidal.gather.select`."""
        from tidal.gather import select

        return select(strategy, scoring, chunk_size, store=store)

    def close(self) -> None:
        pass


LOCAL = Local()  # the one-process Comm every call defaults to
