"""The detached TD module and the calibrated predicted TD (issue 20) against hand-computed answers."""

import math

import pytest
import torch
import torch.nn.functional as F

from tidal.config import TrainConfig
from tidal.models import ResNet18
from tidal.strategies import ScoreInputs, StepBatch, TrainContext, create_strategy
from tidal.strategies.scores import entropy, margin
from tidal.strategies.tidal import TDPredictionObjective
from tidal.strategies.tidal_variants import ScoringTDObjective, fit_td_temperature
from tidal.train import train_model


def _ctx(model, labeled, dataset=None, num_classes=3):
    return TrainContext(dataset, labeled, torch.tensor([100, 101]), num_classes, model.feature_channels,
                        model.embedding_dim, epochs=2, device=torch.device("cpu"), eval_batch_size=7)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("detach", [True, False])
def test_detached_backbone_gets_exactly_the_cross_entropy_gradients(detach):
    torch.manual_seed(0)
    model = ResNet18(3, width=2, in_channels=1)
    labeled = torch.tensor([5, 9, 20, 33])
    x, y = torch.randn(4, 1, 12, 12), torch.tensor([0, 1, 2, 0])
    out = model(x)
    F.cross_entropy(out.logits, y).backward()
    plain = _grads(model)
    model.zero_grad(set_to_none=True)

    obj = TDPredictionObjective(_ctx(model, labeled), weight=1.0, detach=detach)
    out = model(x)  # train mode: the same batch statistics, the same outputs
    ce = F.cross_entropy(out.logits, y, reduction="none")
    (ce.mean() + obj.loss(StepBatch(x, y, labeled, 0, out, ce))).backward()
    joint = _grads(model)
    same = [torch.equal(plain[n], joint[n]) for n in plain]
    if detach:
        assert all(same)  # bit for bit: the KL term sends nothing to the backbone
    else:
        assert not all(same)  # the paper's module: the KL term reaches the backbone
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.module.parameters())
    # the record and the module's target are the paper's either way (Eqs. 5, 8)
    assert torch.equal(obj.dynamics.targets(labeled), torch.softmax(out.logits.detach(), 1))


@pytest.mark.parametrize("name", ["tidal-detached-entropy", "tidal-detached-margin", "tidal-detached-diverse-entropy",
                                  "tidal-entropy", "tidal-calibrated-margin", "tidal-diverse-entropy"])
def test_each_strategy_s_objective_reaches_the_backbone_or_not(name):
    """The ``detached`` strategies' objectives send the backbone nothing; TiDAL's and the others' do."""
    torch.manual_seed(0)
    model = ResNet18(3, width=2, in_channels=1)
    labeled = torch.tensor([5, 9, 20, 33])
    x, y = torch.randn(4, 1, 12, 12), torch.tensor([0, 1, 2, 0])
    F.cross_entropy(model(x).logits, y).backward()
    plain = _grads(model)
    model.zero_grad(set_to_none=True)
    obj = create_strategy(name).make_objective(_ctx(model, labeled))
    out = model(x)
    ce = F.cross_entropy(out.logits, y, reduction="none")
    (ce.mean() + obj.loss(StepBatch(x, y, labeled, 0, out, ce))).backward()
    same = all(torch.equal(plain[n], g) for n, g in _grads(model).items())
    assert same == ("detached" in name)


def test_detached_run_trains_the_plain_cross_entropy_backbone_bit_for_bit(tiny_splits):
    """A whole training run: the backbone after ``tidal-detached-*``'s training is the plain-CE one."""
    train = tiny_splits.train
    config = TrainConfig(epochs=2, width=2, batch_size=16)
    labeled = torch.arange(0, 64)

    def run(with_module: bool):
        torch.manual_seed(0)
        model = ResNet18(train.num_classes, 2, train.image_shape[0])
        obj = None
        if with_module:
            torch.manual_seed(1)
            obj = TDPredictionObjective(_ctx(model, labeled, train, train.num_classes), detach=True)
        train_model(model, obj, train, labeled, config, torch.Generator().manual_seed(0))
        return model.state_dict(), obj

    plain, _ = run(False)
    detached, obj = run(True)
    assert all(torch.equal(plain[k], detached[k]) for k in plain)
    assert obj.dynamics.counts.eq(config.epochs).all()  # the module still learned from the full record


def test_temperature_of_a_two_class_row_by_hand():
    # softmax(β [0, 1]) = [1 - σ(β), σ(β)] = p̄ = [0.2, 0.8]  =>  β = logit(0.8) = ln 4,  T = 1 / ln 4
    t = fit_td_temperature(torch.tensor([[0.0, 1.0]], dtype=torch.float64),
                           torch.tensor([[0.2, 0.8]], dtype=torch.float64))
    assert math.isclose(t, 1 / math.log(4), rel_tol=1e-9)


def test_temperature_recovers_the_one_that_made_the_record():
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(50, 5, generator=g, dtype=torch.float64)
    for t0 in (0.5, 1.0, 2.0, 7.0):
        assert math.isclose(fit_td_temperature(z, torch.softmax(z / t0, 1)), t0, rel_tol=1e-7)


def test_temperature_at_the_ends_and_when_nothing_depends_on_it():
    z = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    onehot = F.one_hot(z.argmax(1), 2).float()  # the sharpest record: T as small as allowed
    assert fit_td_temperature(z, onehot, t_range=(0.05, 20.0)) == 0.05
    anti = F.one_hot(z.argmin(1), 2).float()  # the record disagrees with every prediction: flattest
    assert fit_td_temperature(z, anti, t_range=(0.05, 20.0)) == 20.0
    assert fit_td_temperature(torch.ones(3, 4), torch.full((3, 4), 0.25)) == 1.0  # constant rows
    assert fit_td_temperature(torch.zeros(0, 4), torch.zeros(0, 4)) == 1.0
    with pytest.raises(ValueError, match=r"must both be \[m, C\]"):
        fit_td_temperature(torch.zeros(2, 3), torch.zeros(2, 4))


def test_objective_fits_the_temperature_on_the_labeled_record(tiny_splits):
    """Record p̄ = softmax(m(x)/3) for the labeled set, by hand: the fitted T is 3; the TD
    uncertainty of candidates is H̄ / (1 - M̄)/2 of the module's eval-mode prediction."""
    train = tiny_splits.train
    torch.manual_seed(0)
    model = ResNet18(train.num_classes, 2, train.image_shape[0])
    labeled = torch.arange(0, 40, 2)
    obj = ScoringTDObjective(_ctx(model, labeled, train, train.num_classes))
    with pytest.raises(RuntimeError, match="has not been trained"):
        obj.temperature()
    obj.end_epoch(0, model)
    model.eval()
    with torch.no_grad():
        out = model(train.inputs(labeled))
        z = obj.module(out.features)
    obj.dynamics.update(labeled, torch.softmax(z / 3, 1))
    assert math.isclose(obj.temperature(), 3.0, rel_tol=1e-4)
    cand = torch.arange(41, 60)
    with torch.no_grad():
        out = model(train.inputs(cand))
        td = torch.softmax(obj.module(out.features), 1)
    assert torch.allclose(obj.td_uncertainty(cand, "entropy").float(), entropy(td), atol=1e-6)
    want = (1 - margin(td, reference=out.logits.argmax(1))) / 2
    assert torch.allclose(obj.td_uncertainty(cand, "margin").float(), want, atol=1e-6)
    assert obj.predict(out).keys() == {"td", "td_logits"}


class _FixedTemperature:
    def temperature(self):
        return 2.0


def test_calibrated_scores_use_the_tempered_prediction():
    z = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1]])
    inp = ScoreInputs(torch.tensor([7, 8, 9]), torch.tensor([1]), 1, torch.Generator(), probs=probs,
                      aux={"td": torch.softmax(z, 1), "td_logits": z}, objective=_FixedTemperature())
    q = torch.softmax(z / 2, 1)
    assert torch.allclose(create_strategy("tidal-calibrated-entropy").score(inp), entropy(q), atol=1e-6)
    # row 0: q = [e/(e+2), 1/(e+2), 1/(e+2)], ŷ = 0 -> M̄ = (e - 1)/(e + 2)
    got = create_strategy("tidal-calibrated-margin").score(inp)
    assert math.isclose(float(got[0]), -(math.e - 1) / (math.e + 2), rel_tol=1e-6)
    assert torch.allclose(got, -margin(q, reference=probs.argmax(1)), atol=1e-6)


def test_detached_scores_are_tidal_scores():
    td = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1]])
    inp = ScoreInputs(torch.tensor([7, 8, 9]), torch.tensor([1]), 1, torch.Generator(), probs=probs, aux={"td": td})
    for flavour in ("entropy", "margin"):
        assert torch.equal(create_strategy(f"tidal-detached-{flavour}").score(inp),
                           create_strategy(f"tidal-{flavour}").score(inp))
