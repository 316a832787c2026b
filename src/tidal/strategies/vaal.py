"""VAAL and TA-VAAL: an adversarially trained VAE picks what looks unlabeled (semi-supervised).

VAAL (Sinha, Ebrahimi & Darrell, ICCV 2019, §3): a β-VAE is trained on labeled *and*
unlabeled images (Eq. 1, the "transductive" reconstruction + KL loss) while it plays a
minimax game with a discriminator ``D`` on the latent means ``μ(x)``:

* VAE step:  ``L_VAE = vae(x_L) + vae(x_U) + λ · [BCE(D(μ_L), 1) + BCE(D(μ_U), 1)]``
  (Eqs. 1-3: the encoder tries to make every latent look labeled), λ = ``adversary_weight``.
* D step:    ``L_D = BCE(D(μ_L), 1) + BCE(D(μ_U), 0)`` (Eq. 4), μ re-encoded after the VAE step.

Each step pairs an unlabeled batch with a labeled batch of the same size and runs them
through the VAE as *one* batch, so batch norm's statistics are shared; the authors' code
runs two batches, which gives the discriminator a batch-statistics cue that is absent when
scoring (eval-mode batch norm).

Selection scores each candidate by the discriminator's probability that it is unlabeled,
``1 - D(μ(x))``; higher = more informative. The score is per sample: the loop streams the
candidates in chunks cut at multiples of the eval batch size (``batch_aligned``), so the VAE
sees the same batches as in one whole pass and the selection is bit-identical.

TA-VAAL (Kim et al., "Task-Aware Variational Adversarial Active Learning", CVPR 2021,
§3.2-3.3) adds Learning Loss's loss-prediction module, trained with the classifier by the
pairwise ranking loss, and conditions VAAL on it: after training, each image of the
labeled set and the candidate subset gets ``r = rank(l̂) / (n - 1) ∈ [0, 1]``, the rank of
its predicted loss ``l̂`` among all ``n`` of those images (0 = smallest). ``r`` is concatenated to
``z`` before the decoder and to ``μ`` before the discriminator, in training and scoring.
(The authors' code feeds ``sigmoid(l̂)`` to the VAE and the raw ``l̂`` to ``D`` instead;
we follow the paper's normalised ranking.)

When: the classifier trains as usual (CE, plus the ranking loss for TA-VAAL); the VAE and
``D`` are trained afterwards, in ``end_epoch`` of the final epoch, for ``vaal_epochs`` passes
over the unlabeled data, each unlabeled batch paired with a labeled batch drawn cyclically
from the labeled set. Its time is counted in the cycle's training time. The unlabeled data
are this cycle's scored subset (``TrainContext.candidates``, 10^4 images in the paper's
protocol), as in the TA-VAAL authors' code; the original VAAL trains on the whole unlabeled
pool. A fresh VAE and ``D`` are built every cycle. Adam (lr 5e-4), β = 1, λ = 1 and 512-unit
``D`` follow both papers; the VAE is narrower than the paper's (see ``tidal.models.vae``).
Feature-vector inputs (``input_shape == (D,)``) get the MLP VAE of ``tidal.models.vae_mlp``.
Each method reduces the VAE's KL term as its authors' code does: VAAL sums it over the batch
and latent elements (``solver.py``, ``Solver.vae_loss``), TA-VAAL averages it
(``selection_methods.py``, ``vae_loss``); see :func:`tidal.models.vae.vae_loss`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tidal.inference import batched_outputs
from tidal.models.resnet import ModelOutput
from tidal.models.vae import VAE, LatentDiscriminator, vae_loss
from tidal.models.vae_mlp import MLPVAE
from tidal.strategies.base import AuxObjective, ScoreInputs, StepBatch, Strategy, TrainContext, register
from tidal.strategies.lloss import LossPredictionObjective
from tidal.train import epoch_batches

__all__ = ["TAVAAL", "TAVAALObjective", "VAAL", "VAALObjective", "normalized_rank"]

_SEMI = " [semi-supervised: trains on unlabeled data]"


class VAALObjective(AuxObjective):
    """Owns one cycle's VAE and discriminator; trains them at the end of the last epoch.

    Adds nothing to the classifier's loss. The VAE and ``D`` are submodules (so they move
    with ``.to(device)``) but receive no gradient in the classifier's step, so its SGD skips
    them; they have their own Adam optimisers.

    Args:
        ctx: the cycle's context; ``ctx.labeled`` and ``ctx.candidates`` are the labeled and
            unlabeled data, ``ctx.epochs`` tells which epoch is the last.
        passes: passes over the unlabeled data (``StrategyConfig.vaal_epochs``).
        latent_dim: VAE latent size (``StrategyConfig.vaal_latent_dim``; paper: 32).
        channels: VAE encoder widths, one stride-2 stage each (image inputs).
        vector_hidden: MLP VAE encoder widths (vector inputs ``(D,)``).
        hidden: discriminator width (paper: 512).
        batch_size: unlabeled (and labeled) images per step (TA-VAAL's code: 128).
        lr: Adam learning rate of both networks (paper: 5e-4).
        beta: KL weight β (paper: 1).
        kl_reduction: how the KL term is reduced over batch and latent elements
            (:func:`~tidal.models.vae.vae_loss`): ``"sum"`` as in VAAL's code (the default),
            ``"mean"`` as in TA-VAAL's.
        adversary_weight: λ, weight of the VAE's adversarial term (paper: 1).
        cond_dim: size of the condition fed to the decoder and ``D`` (0 = plain VAAL).
    """

    def __init__(self, ctx: TrainContext, *, passes: int = 10, latent_dim: int = 32,
                 channels: Sequence[int] = (16, 32, 64), hidden: int = 512, batch_size: int = 128,
                 lr: float = 5e-4, beta: float = 1.0, adversary_weight: float = 1.0, cond_dim: int = 0,
                 vector_hidden: Sequence[int] = (256, 128), kl_reduction: str = "sum") -> None:
        super().__init__()
        self.dataset, self.labeled, self.unlabeled = ctx.dataset, ctx.labeled, ctx.candidates
        self.train_epochs, self.eval_batch_size = ctx.epochs, ctx.eval_batch_size
        self.selects = ctx.selects  # the last cycle scores nothing: no VAE to train then
        self.passes, self.batch_size, self.lr = passes, batch_size, lr
        self.beta, self.adversary_weight, self.kl_reduction = beta, adversary_weight, kl_reduction
        shape = tuple(ctx.dataset.input_shape)
        if len(shape) == 3:  # images [C, H, W]: the convolutional VAE
            c, h, w = shape
            self.vae = VAE(c, (h, w), latent_dim, channels, cond_dim)
        elif len(shape) == 1:  # feature vectors [D]: the MLP VAE
            self.vae = MLPVAE(shape[0], latent_dim, vector_hidden, cond_dim)
        else:
            raise ValueError(f"VAAL needs image inputs (C, H, W) or vectors (D,), got input_shape={shape}")
        self.discriminator = LatentDiscriminator(latent_dim, cond_dim, hidden)
        # Drawn from the RNG the loop seeds for make_objective, so each cycle is reproducible.
        self.seed = int(torch.randint(0, 2**62, ()))
        self.fitted = False

    def end_epoch(self, epoch: int, model: nn.Module) -> None:
        if epoch == self.train_epochs - 1 and self.selects:
            self.prepare(model)
            self.fit()

    def prepare(self, model: nn.Module) -> None:
        """Read what the VAE is conditioned on from the trained classifier (VAAL: nothing)."""

    def condition(self, indices: torch.Tensor) -> torch.Tensor | None:
        """The condition ``[b, cond_dim]`` of absolute ``indices`` (VAAL: None)."""
        return None

    def _images(self, indices: torch.Tensor) -> torch.Tensor:
        """Model inputs ``[b, *input_shape]`` of absolute ``indices`` (normalised images or vectors)."""
        return self.dataset.inputs(indices)

    @staticmethod
    def _bce(logits: torch.Tensor, m: int, unlabeled_target: float) -> torch.Tensor:
        """``BCE(D_L, 1) + BCE(D_U, unlabeled_target)``, each a mean; the first ``m`` rows are labeled."""
        target = torch.full_like(logits, unlabeled_target)
        target[:m] = 1.0
        per = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return per[:m].mean() + per[m:].mean()

    def fit(self) -> None:
        """Train the VAE and ``D`` adversarially for ``passes`` passes over the unlabeled data."""

        def forever(indices: torch.Tensor) -> Iterator[torch.Tensor]:
            while True:
                yield from epoch_batches(indices, self.batch_size, g)

        device = self.dataset.device
        g = torch.Generator().manual_seed(self.seed)  # batch order (CPU)
        noise = torch.Generator(device=device).manual_seed(self.seed)  # reparameterisation ε
        opt_vae = torch.optim.Adam(self.vae.parameters(), lr=self.lr)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr)
        self.vae.train()
        self.discriminator.train()
        labeled = forever(self.labeled.cpu())
        for _ in range(self.passes):
            for u_idx in epoch_batches(self.unlabeled.cpu(), self.batch_size, g):
                u_idx, l_idx = u_idx.to(device), next(labeled).to(device)
                # One batch, labeled rows first, so batch norm's statistics cannot tell the sets apart.
                m, idx = len(l_idx), torch.cat([l_idx, u_idx])
                x, c = self._images(idx), self.condition(idx)
                out = self.vae(x, c, noise)
                trd = (vae_loss(x[:m], out[:m], self.beta, kl_reduction=self.kl_reduction)  # Eq. 1
                       + vae_loss(x[m:], out[m:], self.beta, kl_reduction=self.kl_reduction))
                fool = self._bce(self.discriminator(out.mu, c), m, unlabeled_target=1.0)  # Eq. 2
                loss = trd + self.adversary_weight * fool  # Eq. 3
                opt_vae.zero_grad(set_to_none=True)
                loss.backward()
                opt_vae.step()

                with torch.no_grad():
                    mu = self.vae.encode(x)[0]
                d_loss = self._bce(self.discriminator(mu, c), m, unlabeled_target=0.0)  # Eq. 4
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
        self.vae.zero_grad(set_to_none=True)
        self.discriminator.zero_grad(set_to_none=True)
        self.vae.eval()
        self.discriminator.eval()
        self.fitted = True

    @torch.no_grad()
    def unlabeled_probability(self, indices: torch.Tensor) -> torch.Tensor:
        """``1 - D(μ(x))`` (``D`` also reads the condition in TA-VAAL) for absolute ``indices [n]``: float64 ``[n]``.

        Computed in float64 from the logit so that confident scores do not all round to 1.
        """
        if not self.fitted:
            raise RuntimeError("the VAAL objective has not been trained; it trains in end_epoch of the last "
                               f"epoch (epoch index {self.train_epochs - 1})")
        self.vae.eval()
        self.discriminator.eval()
        device = self.dataset.device
        out = []
        for chunk in indices.split(self.eval_batch_size):
            chunk = chunk.to(device)
            mu = self.vae.encode(self._images(chunk))[0]
            out.append(torch.sigmoid(-self.discriminator(mu, self.condition(chunk)).double()).cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _objective(inputs: ScoreInputs) -> VAALObjective:
    if not isinstance(inputs.objective, VAALObjective):
        got = type(inputs.objective).__name__
        raise ValueError(f"VAAL scoring needs the VAALObjective that trained this cycle, got {got}")
    return inputs.objective


@register
class VAAL(Strategy):
    name = "vaal"
    description = "VAAL: discriminator's probability that a VAE latent is unlabeled (Sinha et al. 2019)" + _SEMI
    semi_supervised = True
    # A candidate's score depends only on its own latent, so the loop streams it (running top-k).
    # The VAE encodes a chunk in batches of eval_batch_size and its float results move with the
    # batch's composition (tested), so chunks are cut at multiples of the eval batch size: every
    # batch is the one the whole-array pass ran, and the scores are bit-identical.
    per_sample = True
    batch_aligned = True

    def make_objective(self, ctx: TrainContext) -> AuxObjective:
        return VAALObjective(ctx, passes=self.config.vaal_epochs, latent_dim=self.config.vaal_latent_dim)

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return _objective(inputs).unlabeled_probability(inputs.candidates)


def normalized_rank(values: torch.Tensor) -> torch.Tensor:
    """Rank of each value among ``values [n]``, scaled to [0, 1]: ``rank / (n - 1)``, float32 ``[n]``.

    The smallest value gets 0, the largest 1; ties keep input order (stable sort). TA-VAAL's
    "normalised ranking" of the predicted losses (Kim et al. 2021, §3.3).
    """
    order = torch.argsort(values, stable=True)
    rank = torch.empty(len(values), dtype=torch.float32, device=values.device)
    rank[order] = torch.arange(len(values), dtype=torch.float32, device=values.device) / max(len(values) - 1, 1)
    return rank


class TAVAALObjective(VAALObjective):
    """TA-VAAL: Learning Loss's module trains with the classifier; VAAL is conditioned on its rank.

    ``loss`` is the loss-prediction objective's ranking loss. At the end of the last epoch
    (after that objective's own ``end_epoch``) the trained classifier, in eval mode, predicts
    ``l̂`` for the labeled set and the candidates together; :func:`normalized_rank` over those
    ``m + n`` values is the 1-d condition of the decoder and the discriminator.

    Args:
        ctx: the cycle's context.
        loss_prediction: the Learning Loss objective (its parameters train with the backbone).
        **vaal: the :class:`VAALObjective` options except ``cond_dim`` (which is 1) and
            ``kl_reduction`` (``"mean"``, as in TA-VAAL's code).
    """

    def __init__(self, ctx: TrainContext, loss_prediction: LossPredictionObjective, **vaal) -> None:
        super().__init__(ctx, cond_dim=1, kl_reduction="mean", **vaal)
        self.loss_prediction = loss_prediction
        self.rank: torch.Tensor | None = None  # [N] over the whole split; set by prepare

    def loss(self, batch: StepBatch) -> torch.Tensor:
        return self.loss_prediction.loss(batch)

    def predict(self, out: ModelOutput) -> dict[str, torch.Tensor]:
        return self.loss_prediction.predict(out)

    def carried(self) -> nn.Module:
        """Learning Loss's module, kept in continue mode with the backbone whose features it reads, as
        for ``lloss``; the VAE and ``D`` are built fresh every cycle. (TA-VAAL's own ``main.py``
        rebuilds the backbone and the module every cycle: that is ``retrain="scratch"``, the default.)"""
        return self.loss_prediction.carried()

    def end_epoch(self, epoch: int, model: nn.Module) -> None:
        self.loss_prediction.end_epoch(epoch, model)
        super().end_epoch(epoch, model)

    def prepare(self, model: nn.Module) -> None:

        pool = torch.cat([self.labeled, self.unlabeled])
        with torch.no_grad():
            pred = torch.cat([self.loss_prediction.predicted_loss(out.features)
                              for _, out in batched_outputs(model, self.dataset, pool, self.eval_batch_size)])
        self.rank = torch.zeros(len(self.dataset), device=self.dataset.device)
        self.rank[pool.to(self.rank.device)] = normalized_rank(pred).to(self.rank.device)

    def condition(self, indices: torch.Tensor) -> torch.Tensor:
        return self.rank[indices].unsqueeze(1)


@register
class TAVAAL(Strategy):
    name = "ta-vaal"
    description = ("TA-VAAL: VAAL conditioned on the normalised rank of Learning Loss's predicted loss "
                   "(Kim et al. 2021)" + _SEMI)
    semi_supervised = True
    per_sample = True  # as VAAL's
    batch_aligned = True
    model_needs = frozenset({"features"})  # its loss-prediction module reads the feature maps

    def make_objective(self, ctx: TrainContext) -> AuxObjective:
        c = self.config
        loss_prediction = LossPredictionObjective(ctx, weight=c.lloss_weight, margin=c.lloss_margin,
                                                  stop_at=c.lloss_stop_at)
        return TAVAALObjective(ctx, loss_prediction, passes=c.vaal_epochs, latent_dim=c.vaal_latent_dim)

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return _objective(inputs).unlabeled_probability(inputs.candidates)
