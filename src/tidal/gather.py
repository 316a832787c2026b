"""The one pass that gathers what a strategy ``needs`` for scoring (see ``strategies.base.NEEDS``),
and the one selection function the loop calls.

Gathering yields chunks (:func:`gather_chunks`): each holds the needs of a run of consecutive
candidates, computed batch by batch exactly as the whole-array :func:`gather` computes them. A
``per_sample`` strategy is scored chunk by chunk and a :class:`~tidal.strategies.base.RunningTopK`
keeps the best k, so :func:`select` never holds ``[n, C]`` probabilities or ``[T, n, C]`` MC
samples for it (also for a model without ``logits_from_embedding``: its T stochastic passes run
batch by batch). A ``blockwise`` set strategy (Core-Set, BADGE, CAL) gets its arrays through a
compact store (:mod:`tidal.embedstore`: float32 in memory by default, or float16 / on disk) that
it reads in row blocks; any other set strategy is scored once on the whole arrays. All give the
ids and scores :func:`~tidal.strategies.base.select_top_k` gives on the whole arrays, bit for
bit (a float16 store: on the rounded arrays).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from tidal.data.dataset import Split
from tidal.embedstore import EmbeddingStore, StoreSpec
from tidal.errors import NonFiniteError
from tidal.inference import batched_outputs
from tidal.strategies.base import AuxObjective, RunningTopK, ScoreInputs, Strategy, select_top_k

__all__ = ["ScoringPass", "gather", "gather_chunks", "gather_stored", "select"]

# The per-candidate fields of ScoreInputs and the dimension along which each runs over candidates.
_FIELDS = {"probs": 0, "embedding": 0, "mc_probs": 1}


@dataclass(frozen=True)
class ScoringPass:
    """One model pass over the candidates, what every gather function and :func:`select` read."""

    model: nn.Module  # the trained backbone, in eval mode while it runs
    objective: AuxObjective | None  # the strategy's trained objective (its ``predict`` gives ``aux``), or None
    dataset: Split  # the split the candidate and labeled ids index
    candidates: torch.Tensor  # absolute ids to score, int64 [n]
    labeled: torch.Tensor  # absolute ids of the labeled set, int64 [m]
    k: int  # how many to select
    generator: torch.Generator  # the cycle's generator (random and seeded strategies draw from it)
    batch_size: int = 1024  # samples per model forward pass


def _set_dropout(model: nn.Module, active: bool) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train(active)


def _piece(chunk: torch.Tensor, out, needs: frozenset[str], objective: AuxObjective | None) -> dict:
    """The deterministic needs (``probs``, ``embedding``, ``aux``) of one batch's model output, on the CPU."""
    piece: dict = {"candidates": chunk.cpu()}
    with torch.no_grad():
        if "probs" in needs:
            piece["probs"] = torch.softmax(out.logits, dim=1).cpu()
        if "embedding" in needs:
            piece["embedding"] = out.embedding.cpu()
        if "aux" in needs and objective is not None:
            piece["aux"] = {key: v.cpu() for key, v in objective.predict(out).items()}
    return piece


def _batches(scoring: "ScoringPass", needs: frozenset[str], mc_samples: int) -> Iterator[dict]:
    """The candidates' needs (all but ``labeled_embedding``) one batch of ``batch_size`` at a time,
    in candidate order: dicts with ``candidates [b]`` and the needed fields, on the CPU."""
    model, objective, dataset, candidates, batch_size = (scoring.model, scoring.objective, scoring.dataset,
                                                        scoring.candidates, scoring.batch_size)
    mc = "mc_probs" in needs and mc_samples > 0
    if mc and not hasattr(model, "logits_from_embedding"):
        yield from _stochastic_batches(scoring, needs, mc_samples)
        return
    if not needs & {"probs", "embedding", "aux", "mc_probs"}:
        for chunk in candidates.split(batch_size):
            yield {"candidates": chunk.cpu()}
        return
    for chunk, out in batched_outputs(model, dataset, candidates, batch_size):
        piece = _piece(chunk, out, needs, objective)  # not under no_grad across the yield: the caller's mode stays
        if mc:
            # Dropout sits only between the embedding and the classifier: the backbone ran once
            # (eval mode, deterministic); sample the T dropout masks on the embedding alone.
            head = model.logits_from_embedding
            _set_dropout(model, True)
            try:
                with torch.no_grad():
                    piece["mc_probs"] = torch.stack([torch.softmax(head(out.embedding), dim=1).cpu()
                                                     for _ in range(mc_samples)])
            finally:
                _set_dropout(model, False)
        yield piece


def _stochastic_batches(scoring: "ScoringPass", needs: frozenset[str], mc_samples: int) -> Iterator[dict]:
    """:func:`_batches` for a model without ``logits_from_embedding``: batch by batch, one eval pass
    for the deterministic needs, then ``mc_samples`` full passes over the same batch with dropout
    active (batch norm stays in eval mode). Holds ``[T, batch, C]`` at a time, never ``[T, n, C]``.

    The dropout masks are drawn batch by batch (T passes of batch 1, then of batch 2, ...), not
    pass by pass over all candidates as before this path was chunked: the same distribution,
    other draws from the global generator.
    """
    model, objective, dataset = scoring.model, scoring.objective, scoring.dataset
    was_training = model.training
    model.eval()
    deterministic = needs & {"probs", "embedding", "aux"}
    try:
        for chunk, x in dataset.batches(scoring.candidates.split(scoring.batch_size)):
            with torch.no_grad():
                piece = _piece(chunk, model(x), needs, objective) if deterministic else {"candidates": chunk.cpu()}
                _set_dropout(model, True)
                try:
                    piece["mc_probs"] = torch.stack([torch.softmax(model(x).logits, dim=1).cpu()
                                                     for _ in range(mc_samples)])
                finally:
                    _set_dropout(model, False)
            yield piece
    finally:
        model.train(was_training)


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


def gather_chunks(scoring: ScoringPass, needs: frozenset[str], mc_samples: int = 0,
                  chunk_size: int | None = None) -> Iterator[ScoreInputs]:
    """:func:`gather` in chunks: a :class:`ScoreInputs` for each run of ``chunk_size`` consecutive
    candidates (default ``batch_size``; the last chunk may be shorter), in candidate order.

    The model still runs in batches of ``batch_size``, so every value equals the whole-array
    one; a chunk holds at most ``chunk_size + batch_size`` candidates' needs at once.
    ``labeled_embedding`` is not gathered here (set strategies only).
    """
    p = scoring
    size = p.batch_size if chunk_size is None else chunk_size
    if size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    pieces = _batches(p, needs, mc_samples)
    for piece in _rechunk(pieces, size):
        yield _inputs(piece, p.labeled, p.k, p.generator, p.objective)


def gather(scoring: ScoringPass, needs: frozenset[str], mc_samples: int = 0) -> ScoreInputs:
    """Run the model once over the candidates and collect exactly what ``needs`` asks for, whole.

    Returns a :class:`ScoreInputs` with tensors on the CPU, ``[n, ...]`` (``mc_probs``:
    ``[T, n, C]``). ``mc_probs`` runs ``mc_samples`` extra passes with dropout active (MC
    dropout); ``labeled_embedding`` runs one pass over the labeled set. Memory grows with n:
    the loop uses it only for set strategies (:func:`select`).
    """
    p = scoring
    pieces = list(_batches(p, needs, mc_samples))
    inputs = _inputs(_cat(pieces) if pieces else {"candidates": p.candidates.cpu()}, p.labeled, p.k, p.generator,
                     p.objective)
    inputs.candidates = p.candidates.cpu()
    if "labeled_embedding" in needs:
        inputs.labeled_embedding = torch.cat(
            [out.embedding.cpu() for _, out in batched_outputs(p.model, p.dataset, p.labeled, p.batch_size)]
        )
    return inputs


def gather_stored(scoring: ScoringPass, needs: frozenset[str], store: EmbeddingStore) -> ScoreInputs:
    """:func:`gather` for a ``blockwise`` set strategy: ``probs [n, C]``, ``embedding [n, D]`` and
    ``labeled_embedding [m, D]`` are written batch by batch into ``store`` and handed over as its
    :class:`~tidal.embedstore.StoredRows` (the same values as :func:`gather`'s tensors in a float32
    store; rounded once in a float16 one). ``aux`` and ``mc_probs`` are not supported here."""
    if needs & {"aux", "mc_probs"}:
        raise ValueError(f"a blockwise strategy cannot need {sorted(needs & {'aux', 'mc_probs'})}")
    p = scoring
    inputs = _inputs({"candidates": p.candidates.cpu()}, p.labeled, p.k, p.generator, p.objective)
    n, start = len(p.candidates), 0
    for piece in _batches(p, needs - {"labeled_embedding"}, 0):
        for name in ("probs", "embedding"):
            if name in piece:
                if getattr(inputs, name) is None:
                    setattr(inputs, name, store.array(name, n, piece[name].shape[1]))
                getattr(inputs, name).write(start, piece[name])
        start += len(piece["candidates"])
    if "labeled_embedding" in needs:
        rows, start = None, 0
        for _, out in batched_outputs(p.model, p.dataset, p.labeled, p.batch_size):
            emb = out.embedding.cpu()
            if rows is None:
                rows = store.array("labeled_embedding", len(p.labeled), emb.shape[1])
            rows.write(start, emb)
            start += len(emb)
        inputs.labeled_embedding = rows
    return inputs


def select(strategy: Strategy, scoring: ScoringPass, chunk_size: int | None = None, *,
           store: StoreSpec | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather, score and take the top ``k`` of ``candidates``: ``(ids [k], scores [k])``, best first.

    A ``per_sample`` strategy is scored on :func:`gather_chunks` (``chunk_size`` candidates at
    a time, default ``batch_size``; rounded up to a multiple of ``batch_size`` for a
    ``batch_aligned`` one) into a :class:`RunningTopK`. A ``blockwise`` set strategy is scored on
    :func:`gather_stored` into an :class:`~tidal.embedstore.EmbeddingStore` laid out by ``store``
    (default: float32 in memory), closed (its files removed) before returning; any other strategy
    on the whole :func:`gather`. Either way the result is :func:`select_top_k` of the whole scores
    (for a float16 store: of the scores on the rounded arrays).
    """
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size={chunk_size!r} must be a whole number >= 1 (candidates scored at a time)")
    batch_size, needs = scoring.batch_size, strategy.needs
    if strategy.per_sample:
        size = batch_size if chunk_size is None else chunk_size
        if strategy.batch_aligned:
            size = -(-size // batch_size) * batch_size
        top = RunningTopK(scoring.k)
        for inputs in gather_chunks(scoring, needs, strategy.mc_samples, chunk_size=size):
            top.add(_finite(strategy, strategy.score(inputs), inputs, chunked=True), inputs.candidates)
        return top.result()
    if strategy.blockwise:
        with EmbeddingStore(store) as stored:
            inputs = gather_stored(scoring, needs, stored)
            scores = _finite(strategy, strategy.score(inputs), inputs)
        return select_top_k(scores, scoring.candidates, scoring.k)
    inputs = gather(scoring, needs, strategy.mc_samples)
    return select_top_k(_finite(strategy, strategy.score(inputs), inputs), scoring.candidates, scoring.k)


def _finite(strategy: Strategy, scores: torch.Tensor, inputs: ScoreInputs, chunked: bool = False) -> torch.Tensor:
    """``scores``, or :class:`~tidal.errors.NonFiniteError` when any is NaN or infinite, saying
    whether the model's outputs for those candidates already were (the loop then finds why)."""
    finite = torch.isfinite(scores)
    if bool(finite.all()):
        return scores
    first = int(inputs.candidates[~finite.cpu()][0]) if len(inputs.candidates) == len(scores) else None
    outputs = [name for name in ("probs", "embedding", "mc_probs") if isinstance(getattr(inputs, name), torch.Tensor)
               and not bool(torch.isfinite(getattr(inputs, name)).all())]
    outputs += [f"aux {key!r}" for key, v in inputs.aux.items() if not bool(torch.isfinite(v).all())]
    where = f" (first: sample {first})" if first is not None else ""
    why = (f"the model's {', '.join(outputs)} for them are NaN or infinite" if outputs else
           f"from finite model outputs: {type(strategy).__name__}.score gives non-finite values "
           "(a bug of the strategy)")
    count = (f"{int((~finite).sum())} candidates (in a chunk of {len(scores)})" if chunked else
             f"{int((~finite).sum())} of {len(scores)} candidates")
    raise NonFiniteError(f"{count} got NaN or infinite {strategy.name} scores{where}; {why}")
