import math

import torch

from tidal.config import StrategyConfig
from tidal.models import ResNet18
from tidal.strategies import ScoreInputs, StepBatch, TrainContext, create_strategy
from tidal.strategies.tidal import TDPredictionObjective


def _ctx(model, labeled):
    ds = None  # the objective does not read the dataset
    return TrainContext(ds, labeled, torch.tensor([100, 101]), 3, model.feature_channels, model.embedding_dim,
                        epochs=2, device=torch.device("cpu"))


def test_objective_updates_td_and_trains_module_and_backbone():
    torch.manual_seed(0)
    model = ResNet18(3, width=2, in_channels=1)
    labeled = torch.tensor([5, 9, 20, 33])
    obj = TDPredictionObjective(_ctx(model, labeled), weight=1.0)
    x = torch.randn(4, 1, 12, 12)
    out = model(x)
    batch = StepBatch(x, torch.tensor([0, 1, 2, 0]), labeled, 0, out, torch.zeros(4))
    loss = obj.loss(batch)
    # the TD record now holds the (detached) softmax of this very forward pass (Eq. 5 after 1 epoch)
    assert torch.allclose(obj.dynamics.targets(labeled), torch.softmax(out.logits.detach(), 1))
    expected = torch.nn.functional.kl_div(torch.log_softmax(obj.module(out.features), 1),
                                          torch.softmax(out.logits.detach(), 1), reduction="batchmean")
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    loss.backward()
    assert obj.module.out.weight.grad.abs().sum() > 0
    assert model.conv1.weight.grad.abs().sum() > 0  # jointly trained: the KL reaches the backbone


def test_weight_scales_the_loss():
    torch.manual_seed(0)
    model = ResNet18(3, width=2, in_channels=1)
    labeled = torch.tensor([1, 2])
    out = model(torch.randn(2, 1, 8, 8))
    b = StepBatch(None, torch.tensor([0, 1]), labeled, 0, out, torch.zeros(2))
    o1 = TDPredictionObjective(_ctx(model, labeled), weight=1.0)
    torch.manual_seed(0)
    o2 = TDPredictionObjective(_ctx(model, labeled), weight=0.0)
    assert o1.loss(b).item() > 0 and o2.loss(b).item() == 0


def test_scores_use_the_predicted_td():
    td = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1]])  # classifier's snapshot
    inp = ScoreInputs(torch.tensor([7, 8, 9]), torch.tensor([1]), 1, torch.Generator(), probs=probs, aux={"td": td})
    ent = create_strategy("tidal-entropy").score(inp)
    assert ent.argmax().item() == 2  # the uniform predicted TD is the most uncertain
    mar = create_strategy("tidal-margin", StrategyConfig()).score(inp)
    # M̄ with ŷ from the classifier: row0 0.9-0.05=0.85, row1 p̃(1)=0.35-0.4=-0.05, row2 0
    assert torch.allclose(mar, -torch.tensor([0.85, -0.05, 0.0]), atol=1e-6)
