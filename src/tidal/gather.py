"""The one pass that gathers what a strategy ``needs`` for scoring (see ``strategies.base.NEEDS``),
and the one selection function the loop calls.

Gathering yields chunks (:func:`gather_chunks`): each holds the needs of a run of consecutive
candidates, computed batch by batch exactly as the whole-array :func:`gather` computes them. A
``per_sample`` strategy is scored chunk by chunk and a :class:`~tidal.strategies.base.RunningTopK`
keeps the best k, so :func:`select` never holds ``[n, C]`` probabilities or ``[T, n, C]`` MC
samples for it; a set strategy is scored once on the whole arrays. Both give the ids and scores
:func:`~tidal.strategies.base.select_top_k` gives on the whole arrays, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from tidal.data.dataset import Split
from tidal.inference import batched_outputs
from tidal.strategies.base import AuxObjective, RunningTopK, ScoreInputs, Strategy, select_top_k

__all__ = ["gather", "gather_chunks", "select"]

# The per-candidate fields of ScoreInputs and the dimension along which each runs over candidates.
_FIELDS = {"probs": 0, "embedding": 0, "mc_probs": 1}


def _set_dropout(model: nn.Module, active: bool) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train(active)


def _batches(model: nn.Module, objective: AuxObjective | None, needs: frozenset[str], dataset: Split,
             candidates: torch.Tensor, batch_size: int, mc_samples: int) -> Iterator[dict]:
    """The candidates' needs (all but ``labeled_embedding``) one batch of ``batch_size`` at a time,
    in candidate order: dicts with ``candidates [b]`` and the needed fields, on the CPU."""
    mc = "mc_probs" in needs and mc_samples > 0
    if mc and not hasattr(model, "logits_from_embedding"):
        # Any other model: T full stochastic passes, each over every candidate. The dropout masks
        # are drawn pass by pass, so the passes must run in that order: this path holds [T, n, C].
        yield from _whole_mc_batches(model, objective, needs, dataset, candidates, batch_size, mc_samples)
        return
    if not needs & {"probs", "embedding", "aux", "mc_probs"}:
        for chunk in candidates.split(batch_size):
            yield {"candidates": chunk.cpu()}
        return
    for chunk, out in batched_outputs(model, dataset, candidates, batch_size):
        piece: dict = {"candidates": chunk.cpu()}
        with torch.no_grad():  # not around the yield: the caller's grad mode stays its own
            if "probs" in needs:
                piece["probs"] = torch.softmax(out.logits, dim=1).cpu()
            if "embedding" in needs:
                piece["embedding"] = out.embedding.cpu()
            if "aux" in needs and objective is not None:
                piece["aux"] = {key: v.cpu() for key, v in objective.predict(out).items()}
            if mc:
                # Dropout sits only between the embedding and the classifier: the backbone ran once
                # (eval mode, deterministic); sample the T dropout masks on the embedding alone.
                head = model.logits_from_embedding
                _set_dropout(model, True)
                try:
                    piece["mc_probs"] = torch.stack([torch.softmax(head(out.embedding), dim=1).cpu()
                                                     for _ in range(mc_samples)])
                finally:
                    _set_dropout(model, False)
        yield piece


def _whole_mc_batches(model: nn.Module, objective: AuxObjective | None, needs: frozenset[str], dataset: Split,
                      candidates: torch.Tensor, batch_size: int, mc_samples: int) -> Iterator[dict]:
    """:func:`_batches` for a model without ``logits_from_embedding``: MC passes over the whole set first."""
    samples = []
    was_training = model.training
    model.eval()
    _set_dropout(model, True)
    try:
        with torch.no_grad():
            for _ in range(mc_samples):
                samples.append(torch.cat([torch.softmax(model(x).logits, dim=1).cpu()
                                          for _, x in dataset.batches(candidates.split(batch_size))]))
    finally:
        _set_dropout(model, False)
        model.train(was_training)
    mc_probs = torch.stack(samples)
    start = 0
    for piece in _batches(model, objective, needs - {"mc_probs"}, dataset, candidates, batch_size, 0):
        end = start + len(piece["candidates"])
        piece["mc_probs"] = mc_probs[:, start:end]
        start = end
        yield piece


def _cat(pieces: list[dict]) -> dict:
    """Concatenate consecutive pieces along the candidate dimension."""
    if len(pieces) == 1:
        return pieces[0]
    out: dict = {"candidates": torch.cat([p["candidates"] for p in pieces])}
    for name, dim in _FIELDS.items():
        if name in pieces[0]:
            out[name] = torch.cat([p[name] for p in pieces], dim=dim)
    if "aux" in pieces[0]:
        out["aux"] = {key: torch.cat([p["aux"][key] for p in pieces]) for key in pieces[0]["aux"]}
    return out


def _slice(piece: dict, start: int, end: int) -> dict:
    """Candidates ``start:end`` of a piece."""
    out: dict = {"candidates": piece["candidates"][start:end]}
    for name, dim in _FIELDS.items():
        if name in piece:
            out[name] = piece[name].narrow(dim, start, end - start)
    if "aux" in piece:
        out["aux"] = {key: v[start:end] for key, v in piece["aux"].items()}
    return out


def _rechunk(pieces: Iterator[dict], chunk_size: int) -> Iterator[dict]:
    """Regroup consecutive pieces into chunks of ``chunk_size`` candidates (the last may be shorter)."""
    pending: list[dict] = []
    held = 0
    for piece in pieces:
        pending.append(piece)
        held += len(piece["candidates"])
        if held < chunk_size:
            continue
        merged = _cat(pending)
        start = 0
        while held - start >= chunk_size:
            yield _slice(merged, start, start + chunk_size)
            start += chunk_size
        pending = [_slice(merged, start, held)] if start < held else []
        held -= start
    if held:
        yield _cat(pending)


def _inputs(piece: dict, labeled: torch.Tensor, k: int, generator: torch.Generator,
            objective: AuxObjective | None) -> ScoreInputs:
    return ScoreInputs(candidates=piece["candidates"], labeled=labeled.cpu(), k=k, generator=generator,
                       probs=piece.get("probs"), embedding=piece.get("embedding"), mc_probs=piece.get("mc_probs"),
                       aux=piece.get("aux", {}), objective=objective)


def gather_chunks(
    model: nn.Module,
    objective: AuxObjective | None,
    needs: frozenset[str],
    dataset: Split,
    candidates: torch.Tensor,
    labeled: torch.Tensor,
    k: int,
    generator: torch.Generator,
    batch_size: int = 1024,
    mc_samples: int = 0,
    chunk_size: int | None = None,
) -> Iterator[ScoreInputs]:
    """:func:`gather` in chunks: a :class:`ScoreInputs` for each run of ``chunk_size`` consecutive
    candidates (default ``batch_size``; the last chunk may be shorter), in candidate order.

    The model still runs in batches of ``batch_size``, so every value equals the whole-array
    one; a chunk holds at most ``chunk_size + batch_size`` candidates' needs at once (except
    MC samples of a model without ``logits_from_embedding``, gathered whole: see
    :func:`_whole_mc_batches`). ``labeled_embedding`` is not gathered here (set strategies only).
    """
    size = batch_size if chunk_size is None else chunk_size
    if size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    pieces = _batches(model, objective, needs, dataset, candidates, batch_size, mc_samples)
    for piece in _rechunk(pieces, size):
        yield _inputs(piece, labeled, k, generator, objective)


def gather(
    model: nn.Module,
    objective: AuxObjective | None,
    needs: frozenset[str],
    dataset: Split,
    candidates: torch.Tensor,
    labeled: torch.Tensor,
    k: int,
    generator: torch.Generator,
    batch_size: int = 1024,
    mc_samples: int = 0,
) -> ScoreInputs:
    """Run the model once over the candidates and collect exactly what ``needs`` asks for, whole.

    Returns a :class:`ScoreInputs` with tensors on the CPU, ``[n, ...]`` (``mc_probs``:
    ``[T, n, C]``). ``mc_probs`` runs ``mc_samples`` extra passes with dropout active (MC
    dropout); ``labeled_embedding`` runs one pass over the labeled set. Memory grows with n:
    the loop uses it only for set strategies (:func:`select`).
    """
    pieces = list(_batches(model, objective, needs, dataset, candidates, batch_size, mc_samples))
    inputs = _inputs(_cat(pieces) if pieces else {"candidates": candidates.cpu()}, labeled, k, generator, objective)
    inputs.candidates = candidates.cpu()
    if "labeled_embedding" in needs:
        inputs.labeled_embedding = torch.cat(
            [out.embedding.cpu() for _, out in batched_outputs(model, dataset, labeled, batch_size)]
        )
    return inputs


def select(
    strategy: Strategy,
    model: nn.Module,
    objective: AuxObjective | None,
    dataset: Split,
    candidates: torch.Tensor,
    labeled: torch.Tensor,
    k: int,
    generator: torch.Generator,
    batch_size: int = 1024,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather, score and take the top ``k`` of ``candidates``: ``(ids [k], scores [k])``, best first.

    A ``per_sample`` strategy is scored on :func:`gather_chunks` (``chunk_size`` candidates at
    a time, default ``batch_size``) into a :class:`RunningTopK`; any other strategy is scored on
    the whole :func:`gather`. Either way the result is :func:`select_top_k` of the whole scores.
    """
    args = (model, objective, strategy.needs, dataset, candidates, labeled, k, generator, batch_size,
            strategy.mc_samples)
    if strategy.per_sample:
        top = RunningTopK(k)
        for inputs in gather_chunks(*args, chunk_size=chunk_size):
            top.add(strategy.score(inputs), inputs.candidates)
        return top.result()
    return select_top_k(strategy.score(gather(*args)), candidates, k)
