"""Every GPU of a machine: one run trained by several processes under ``torchrun``.

    torchrun --nproc-per-node 4 -m tidal run --preset paper --device cuda --out runs/paper

``torchrun`` starts N copies of ``tidal run`` and sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in each; :func:`launched` reads them and :func:`start` joins the process
group (``nccl`` on CUDA, ``gloo`` on the CPU). Rank ``r`` trains on ``cuda:LOCAL_RANK``
(or the CPU). What each part of a cycle does with the ranks (docs/distributed.md):

* **Training** (:meth:`Ranks.shard`): every rank draws the same epoch permutation and the same
  augmentation from the cycle's generator (the single process's batches, the generator in
  lockstep) and trains on its contiguous piece of each batch; piece sizes differ by at most
  one and each rank's loss is weighted by ``N * b_r / b``, so the averaged gradient is the
  gradient of the batch's mean loss. Gradients of the backbone and of the objective's module
  are all-reduced by hand in one flat buffer after ``backward`` (:meth:`Ranks.reduce_grads`).
  An epoch's last batch with fewer than ``2 N`` samples joins the one before it, so every
  piece holds at least 2 samples (batch norm's minimum); every rank takes the same steps.
* **Batch norm**: statistics are each rank's own piece (``SyncBatchNorm`` has no CPU kernel);
  the running means and variances are averaged over the ranks after every epoch.
* **TD record** (Eq. 5): each labeled sample is in exactly one rank's piece per epoch, so
  that rank folds its softmax into the sample's running mean; after the epoch every rank
  copies the rows the others updated (:meth:`Ranks.sync_records`), so all ranks hold the
  whole record, bit for bit the rows their owners computed, before the next epoch's KL
  targets (Eqs. 8-9) read it.
* **Evaluation and scoring** (:meth:`Ranks.evaluate`, :meth:`Ranks.select`): each rank runs a
  contiguous block of whole batches (the single process's batches); correct counts are summed;
  a per-sample strategy's top-k of each block are gathered and merged by the one ranking
  (:func:`~tidal.strategies.base.select_top_k`), the ids one process picks from the same
  scores. Set strategies (Core-Set, BADGE, CAL, VAAL) and strategies that need no model pass
  (``random``) run on rank 0 alone, which sends the result.
* **Writing**: rank 0 alone holds the run directory's lock, the store and the checkpoints, and
  sends the other ranks what they need (:meth:`Ranks.from_main`).

After every step the ranks hold identical weights (the same all-reduced gradients); the model
and the objective's module are broadcast from rank 0 at the start and end of each training
run, so any difference (a kernel that is not deterministic) cannot survive a cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from tidal.comm import Comm
from tidal.errors import TidalError

if TYPE_CHECKING:
    from tidal.data.dataset import Split
    from tidal.embedstore import StoreSpec
    from tidal.gather import ScoringPass
    from tidal.dynamics import TrainingDynamics
    from tidal.strategies.base import AuxObjective, Strategy

__all__ = ["BACKENDS", "Launch", "PeerError", "Ranks", "launched", "rank_device", "start"]

BACKENDS = ("nccl", "gloo")  # torch.distributed backends: nccl for CUDA, gloo for the CPU (and CUDA, slower)
# How long a rank waits in a collective before giving up: long, because the other ranks wait while
# rank 0 alone runs a set strategy's selection or writes the store. A rank that dies is noticed at
# once anyway (torchrun stops the others).
_TIMEOUT = timedelta(hours=2)
T = TypeVar("T")


class PeerError(TidalError, RuntimeError):
    """Another rank failed; its message is in this one (rank 0 prints it, the others stay quiet)."""


@dataclass(frozen=True)
class Launch:
    """What torchrun told this process: its ``rank`` among ``world_size`` processes and its
    ``local_rank`` on this machine (the GPU it takes)."""

    rank: int
    world_size: int
    local_rank: int

    def check(self, batch_size: int, initial: int, jobs: int) -> None:
        """Refuse what cannot run on ``world_size`` ranks (``ValueError``, one line)."""
        n = self.world_size
        if jobs != 1:
            raise ValueError(f"jobs={jobs} cannot be combined with torchrun (world size {n}): the ranks train one run "
                             "together; use --jobs 1")
        if batch_size < 2 * n:
            raise ValueError(f"batch_size={batch_size} must be >= {2 * n} (2 x world size {n}): each rank trains on "
                             "its share of every batch and batch norm needs 2 samples; raise --batch-size or start "
                             "fewer processes")
        if initial < 2 * n:
            raise ValueError(f"initial={initial} must be >= {2 * n} (2 x world size {n}) under torchrun; raise "
                             "--initial or start fewer processes")


def launched(env: dict[str, str] | None = None) -> Launch | None:
    """The :class:`Launch` torchrun describes in ``env`` (default ``os.environ``), or None when
    this process runs alone (no ``WORLD_SIZE``, or a world of one: the single-process path)."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return None
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        raw = env.get(name, "")
        try:
            values[name] = int(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a whole number; start tidal with torchrun, which sets RANK, "
                             "WORLD_SIZE and LOCAL_RANK") from None
    launch = Launch(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size or launch.local_rank < 0:
        raise ValueError(f"RANK={launch.rank}, WORLD_SIZE={launch.world_size}, LOCAL_RANK={launch.local_rank} do not "
                         "describe a process group; start tidal with torchrun")
    return launch if launch.world_size > 1 else None


def rank_device(launch: Launch, device: torch.device, backend: str | None = None) -> tuple[torch.device, str]:
    """``(this rank's device, backend)``: ``cuda:LOCAL_RANK`` when ``device`` is CUDA (with no index),
    else the CPU; ``backend`` None picks nccl on CUDA, gloo on the CPU."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"dist_backend={backend!r} is not a torch.distributed backend tidal uses; choose nccl "
                         "(CUDA) or gloo")
    if device.type == "cuda":
        if device.index is not None:
            raise ValueError(f"device={str(device)!r}: under torchrun each rank takes cuda:LOCAL_RANK; pass --device "
                             "cuda (or auto)")
        dev = torch.device("cuda", launch.local_rank)
    elif device.type == "cpu":
        dev = device
    else:
        raise ValueError(f"device={str(device)!r} is not supported under torchrun; use --device cuda or cpu")
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError("dist_backend='nccl' needs CUDA devices; use --dist-backend gloo or --device cuda")
    return dev, backend


def start(launch: Launch, device: torch.device, backend: str) -> "Ranks":
    """Join torchrun's process group (``MASTER_ADDR``/``MASTER_PORT`` from the environment) and
    check, together, that every rank's device exists: a :class:`Ranks` whose ``close`` leaves it."""
    import torch.distributed as dist

    if device.type == "cuda" and device.index < torch.cuda.device_count():
        torch.cuda.set_device(device)  # before the first collective: nccl's object collectives use it
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend, timeout=_TIMEOUT)
    ranks = Ranks(launch.rank, launch.world_size, device, torch.device("cuda", device.index) if backend == "nccl"
                  else torch.device("cpu"), owns)

    def check_device() -> None:
        if device.type == "cuda":
            if device.index >= torch.cuda.device_count():
                raise ValueError(f"LOCAL_RANK={launch.local_rank} but torch sees {torch.cuda.device_count()} GPU(s) "
                                 f"here; start at most {torch.cuda.device_count()} processes per machine "
                                 "(--nproc-per-node)")
            torch.cuda.set_device(device)

    try:
        ranks.check(check_device)
    except BaseException:
        ranks.close()
        raise
    return ranks


def _block(n: int, parts: int, part: int, unit: int = 1) -> tuple[int, int]:
    """``[start, end)`` of part ``part`` of ``range(n)`` cut into ``parts`` contiguous blocks of
    whole units of ``unit`` (the last unit may be short), block sizes differing by at most one unit."""
    units = -(-n // unit)
    lo = part * (units // parts) + min(part, units % parts)
    hi = lo + units // parts + (1 if part < units % parts else 0)
    return min(lo * unit, n), min(hi * unit, n)


@dataclass
class Ranks(Comm):
    """This process's place in the process group and the collectives a cycle needs: the
    :class:`tidal.comm.Comm` of torchrun's ranks.

    ``device``: where this rank trains; ``comm``: where collectives' tensors go (the GPU for
    nccl, the CPU for gloo). Built by :func:`start`.
    """

    rank: int
    world_size: int
    device: torch.device
    comm: torch.device
    owns_group: bool = True

    def close(self) -> None:
        """Leave the process group (when :func:`start` created it)."""
        import torch.distributed as dist

        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    # --- control: who runs what, and errors that reach every rank ------------------------------

    def _call(self, op: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A collective; a broken connection (another rank died) becomes one :class:`PeerError` line."""
        try:
            return op(*args, **kwargs)
        except RuntimeError as exc:
            text = str(exc).strip()
            cause = text.split("] ", 1)[-1].split(". ")[0][:160] if text else type(exc).__name__
            raise PeerError(f"rank {self.rank} lost the other ranks ({cause}): one of them stopped or failed (its own "
                            "output says why); run the same command again to continue from the stored cycles") from exc

    def _objects(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        self._call(dist.all_gather_object, out, obj)
        return out

    def check(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank; if it raised anywhere, raise on every rank (the rank's own
        error where it failed, a :class:`PeerError` naming the first failed rank elsewhere)."""
        try:
            result, error = fn(), None
        except Exception as exc:  # noqa: BLE001 - sent to the other ranks, then raised again
            result, error = None, exc
        errors = self._objects(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        failed = next((r for r, e in enumerate(errors) if e is not None), None)
        if failed is not None:
            raise PeerError(f"rank {failed} failed: {errors[failed]}")
        return result  # type: ignore[return-value]

    def from_main(self, fn: Callable[[], T], share: bool = True) -> T | None:
        """``fn()`` on rank 0 alone; every rank returns its result (``share=False``: rank 0 returns it,
        the others None) or raises its error (:class:`PeerError` on the other ranks)."""
        import torch.distributed as dist

        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - sent to the other ranks, then raised again
                error = exc
        box = [(result if share else None, None if error is None else str(error))]
        self._call(dist.broadcast_object_list, box, src=0)
        if error is not None:
            raise error
        if box[0][1] is not None:
            raise PeerError(box[0][1])
        return result if self.is_main else box[0][0]

    def main_first(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0, then on the other ranks (e.g. rank 0 downloads, the others read the files)."""
        first = self.check(fn if self.is_main else lambda: None)
        later = self.check((lambda: None) if self.is_main else fn)
        return first if self.is_main else later  # type: ignore[return-value]

    # --- training -----------------------------------------------------------------------------

    def shard(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                                                            float]]:
        """This rank's piece of each batch: ``(ids [b_r], inputs [b_r, ...], share)`` with
        ``share = N * b_r / b`` (the weight of its mean loss). A last batch of fewer than
        ``2 N`` samples joins the one before it."""
        pending = None
        for ids, x in batches:
            if pending is not None and len(ids) < 2 * self.world_size:
                ids, x = torch.cat([pending[0], ids]), torch.cat([pending[1], x])
            elif pending is not None:
                yield self._piece(*pending)
            pending = (ids, x)
        if pending is not None:
            yield self._piece(*pending)

    def _piece(self, ids: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        lo, hi = _block(len(ids), self.world_size, self.rank)
        return ids[lo:hi], x[lo:hi], self.world_size * (hi - lo) / len(ids)

    def _flat(self, tensors: Sequence[torch.Tensor], op: Callable[[torch.Tensor], None]) -> None:
        """Apply the collective ``op`` in place to ``tensors``, one flat buffer per dtype."""
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            flat = torch.cat([t.detach().reshape(-1) for t in group]).to(self.comm)
            op(flat)
            for t, piece in zip(group, flat.split([t.numel() for t in group])):
                t.data.copy_(piece.view_as(t))

    def reduce_grads(self, params: Sequence[nn.Parameter]) -> None:
        """Average the gradients of ``params`` over the ranks (what DDP does, in one bucket after
        ``backward``). Parameters without a gradient (e.g. VAAL's VAE during the classifier's step)
        must lack it on every rank; they are left without one."""
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            self._flat(grads, lambda flat: (self._call(dist.all_reduce, flat), flat.div_(self.world_size)))

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over the ranks of a tensor (a copy on ``value``'s device)."""
        import torch.distributed as dist

        out = value.detach().to(self.comm).clone()
        self._call(dist.all_reduce, out)
        return out.div_(self.world_size).to(value.device)

    @staticmethod
    def snapshot(records: Sequence["TrainingDynamics"]) -> list[torch.Tensor]:
        """Each record's update counts, ``[n]``, before an epoch (for :meth:`sync_records`)."""
        return [r.counts.clone() for r in records]

    def sync_records(self, records: Sequence["TrainingDynamics"], before: Sequence[torch.Tensor]) -> None:
        """Give every rank the rows of ``records`` the other ranks updated since ``before``.

        A rank updates exactly the rows of its own pieces (each labeled sample once per epoch);
        the other ranks overwrite those rows with its values: sums ``[n, C]`` and counts ``[n]``
        become identical on every rank, each row as its owner computed it.
        """
        import torch.distributed as dist

        for record, counts in zip(records, before):
            rows = torch.nonzero(record.counts != counts).flatten()
            # One float64 table [rows, 2 + C]: row, count, sums (float32 -> float64 and back is exact).
            table = torch.cat([rows.unsqueeze(1).double(), record.counts[rows].unsqueeze(1).double(),
                               record.sums[rows].double()], dim=1).to(self.comm)
            sizes = [torch.zeros(1, dtype=torch.int64, device=self.comm) for _ in range(self.world_size)]
            self._call(dist.all_gather, sizes, torch.tensor([len(rows)], device=self.comm))
            most = int(max(s.item() for s in sizes))
            padded = torch.zeros(most, table.shape[1], dtype=table.dtype, device=self.comm)
            padded[: len(rows)] = table
            tables = [torch.empty_like(padded) for _ in range(self.world_size)]
            self._call(dist.all_gather, tables, padded)
            for r, (size, other) in enumerate(zip(sizes, tables)):
                if r == self.rank:
                    continue
                other = other[: int(size.item())].to(record.sums.device)
                idx = other[:, 0].long()
                record.counts[idx] = other[:, 1].to(record.counts.dtype)
                record.sums[idx] = other[:, 2:].to(record.sums.dtype)

    def sync_buffers(self, modules: Iterable[nn.Module | None]) -> None:
        """Average the floating-point buffers (batch norm's running statistics) over the ranks."""
        import torch.distributed as dist

        buffers = [b for m in modules if m is not None for b in m.buffers() if b.is_floating_point()]
        if buffers:
            self._flat(buffers, lambda flat: (self._call(dist.all_reduce, flat), flat.div_(self.world_size)))

    def broadcast(self, modules: Iterable[nn.Module | None]) -> None:
        """Rank 0's parameters and buffers into every rank's ``modules``."""
        import torch.distributed as dist

        tensors = [t for m in modules if m is not None for t in m.state_dict(keep_vars=True).values()
                   if isinstance(t, torch.Tensor)]
        if tensors:
            self._flat(tensors, lambda flat: self._call(dist.broadcast, flat, src=0))

    # --- evaluation and scoring ---------------------------------------------------------------

    def evaluate(self, model: nn.Module, dataset: "Split", batch_size: int = 1024) -> float:
        """:func:`tidal.inference.evaluate` with the batches shared out: the same count of correct answers."""
        import torch.distributed as dist

        from tidal.errors import NonFiniteError
        from tidal.inference import batched_outputs, non_finite_rows

        lo, hi = _block(len(dataset), self.world_size, self.rank, batch_size)
        correct = bad = 0
        for chunk, out in batched_outputs(model, dataset, torch.arange(lo, hi), batch_size):
            bad += non_finite_rows(out.logits)
            correct += int((out.logits.argmax(dim=1) == dataset.labels[chunk]).sum())
        total = torch.tensor([correct, bad], dtype=torch.int64, device=self.comm)
        self._call(dist.all_reduce, total)  # every rank sees the same counts, so all raise or none
        if int(total[1]):
            raise NonFiniteError(f"{int(total[1])} of {len(dataset)} test samples have NaN or infinite logits")
        return int(total[0].item()) / max(len(dataset), 1)

    def select(self, strategy: "Strategy", scoring: "ScoringPass", chunk_size: int | None = None, *,
               store: "StoreSpec | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`tidal.gather.select` over the ranks: ``(ids [k], scores [k])``, best first, on every rank.

        A per-sample strategy that needs a model pass scores a contiguous block of whole batches
        on each rank; the blocks' top-k are gathered and ranked again by
        :func:`~tidal.strategies.base.select_top_k` (blocks in candidate order, so ties still go
        to the earlier candidate): the ids and scores one process selects from the same scores.
        Any other strategy runs on rank 0, which sends the result.
        """
        from tidal.gather import select
        from tidal.strategies.base import NEEDS, select_top_k

        if not strategy.per_sample or not strategy.needs & NEEDS:  # every need is a model pass
            return self.from_main(lambda: select(strategy, scoring, chunk_size, store=store))
        lo, hi = _block(len(scoring.candidates), self.world_size, self.rank, scoring.batch_size)
        piece = replace(scoring, candidates=scoring.candidates[lo:hi], k=min(scoring.k, hi - lo))
        mine = (piece.candidates.cpu(), torch.zeros(0)) if lo == hi else select(strategy, piece, chunk_size,
                                                                                 store=store)
        parts = [p for p in self._objects(mine) if len(p[0])]
        if not parts:
            return select_top_k(torch.zeros(0), torch.zeros(0, dtype=torch.int64), scoring.k)
        ids, scores = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return select_top_k(scores, ids, scoring.k)
