"""The tests' way into :func:`tidal.loop.active_learning`: its settings as keyword arguments,
built into the :class:`~tidal.loop.CycleEnv` and :class:`~tidal.loop.Resume` it takes."""

from __future__ import annotations

import torch

from tidal.loop import CycleEnv, Resume, active_learning, configured_model


def cycles(train, test, pool, strategy, al, train_config, seed, device="cpu", *, start_cycle=0, labeled=None,
           model_state=None, objective_state=None, model_factory=None, chunk_size=None, epoch_hooks=None,
           progress=False):
    """``active_learning`` of ``strategy`` on ``pool`` with ``al`` and ``train_config``, resumed
    at ``start_cycle`` when given."""
    env = CycleEnv(train_config, al, torch.device(device), model_factory or configured_model(train_config),
                   chunk_size=chunk_size, progress=progress)
    resume = Resume(start_cycle, labeled, model_state, objective_state)
    return active_learning(train, test, pool, strategy, seed, env, resume, epoch_hooks)
