"""The one pass that gathers what a strategy ``needs`` for scoring (see ``strategies.base.NEEDS``)."""

from __future__ import annotations

import torch
from torch import nn

from tidal.data.dataset import Split
from tidal.inference import batched_outputs
from tidal.strategies.base import AuxObjective, ScoreInputs

__all__ = ["gather"]


def _set_dropout(model: nn.Module, active: bool) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train(active)


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
    """Run the model once over the candidates and collect exactly what ``needs`` asks for.

    Returns a :class:`ScoreInputs` with tensors on the CPU. ``mc_probs`` runs ``mc_samples``
    extra passes with dropout active (MC dropout); ``labeled_embedding`` runs one pass over
    the labeled set.
    """
    inputs = ScoreInputs(candidates=candidates.cpu(), labeled=labeled.cpu(), k=k, generator=generator,
                         objective=objective)
    if needs & {"probs", "embedding", "aux"}:
        probs, embs, aux = [], [], []
        for _, out in batched_outputs(model, dataset, candidates, batch_size):
            if "probs" in needs:
                probs.append(torch.softmax(out.logits, dim=1).cpu())
            if "embedding" in needs:
                embs.append(out.embedding.cpu())
            if "aux" in needs and objective is not None:
                with torch.no_grad():
                    aux.append({key: v.cpu() for key, v in objective.predict(out).items()})
        inputs.probs = torch.cat(probs) if probs else None
        inputs.embedding = torch.cat(embs) if embs else None
        if aux:
            inputs.aux = {key: torch.cat([a[key] for a in aux]) for key in aux[0]}
    if "mc_probs" in needs and hasattr(model, "logits_from_embedding"):
        # Dropout sits only between the embedding and the classifier: run the backbone once
        # (eval mode, deterministic) and sample the T dropout masks on the embedding alone.
        chunks = []
        with torch.no_grad():
            for _, out in batched_outputs(model, dataset, candidates, batch_size):
                head = model.logits_from_embedding
                _set_dropout(model, True)
                try:
                    chunks.append(torch.stack([torch.softmax(head(out.embedding), dim=1).cpu()
                                               for _ in range(mc_samples)]))
                finally:
                    _set_dropout(model, False)
        inputs.mc_probs = torch.cat(chunks, dim=1) if chunks and mc_samples > 0 else None
    elif "mc_probs" in needs:  # any other model: T full stochastic passes
        samples = []
        was_training = model.training
        model.eval()
        _set_dropout(model, True)
        try:
            with torch.no_grad():
                for _ in range(mc_samples):
                    passes = [torch.softmax(model(x).logits, dim=1).cpu()
                              for _, x in dataset.batches(candidates.split(batch_size))]
                    samples.append(torch.cat(passes))
        finally:
            _set_dropout(model, False)
            model.train(was_training)
        inputs.mc_probs = torch.stack(samples) if samples else None
    if "labeled_embedding" in needs:
        inputs.labeled_embedding = torch.cat(
            [out.embedding.cpu() for _, out in batched_outputs(model, dataset, labeled, batch_size)]
        )
    return inputs
