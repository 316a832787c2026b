import pytest
import torch
import torch.nn.functional as F

from tidal.models import MLP, MultiScaleHead, ResNet18


def test_contract_and_2d_features():
    model = MLP(12, 4, hidden=(16, 8)).eval()
    out = model(torch.randn(5, 12))
    assert out.logits.shape == (5, 4) and out.embedding.shape == (5, 8)
    assert [tuple(f.shape) for f in out.features] == [(5, 16), (5, 8)]
    assert model.feature_channels == (16, 8) and model.embedding_dim == 8
    assert torch.equal(out.features[-1], out.embedding)
    torch.testing.assert_close(model.logits_from_embedding(out.embedding), out.logits)


def test_dropout_only_before_the_classifier():
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=(32,), dropout=0.5)
    x = torch.randn(4, 6)
    model.train()
    a, b = model(x), model(x)
    assert torch.equal(a.embedding, b.embedding) and not torch.allclose(a.logits, b.logits)
    model.eval()
    torch.testing.assert_close(model(x).logits, model(x).logits)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"hidden=\(\)"):
        MLP(4, 2, hidden=())
    with pytest.raises(ValueError, match="dropout=1.0"):
        MLP(4, 2, dropout=1.0)
    with pytest.raises(ValueError, match=r"expects inputs \[B, 4\], got \[2, 3, 4\]"):
        MLP(4, 2)(torch.randn(2, 3, 4))


def test_head_takes_2d_features():
    model = MLP(10, 3, hidden=(16, 8, 4)).eval()
    head = MultiScaleHead(model.feature_channels, out_dim=3)
    out = model(torch.randn(2, 10))
    assert head(out.features).shape == (2, 3)
    expected = head.out(torch.cat([F.relu(fc(f)) for f, fc in zip(out.features, head.fcs)], dim=1))
    torch.testing.assert_close(head(out.features), expected, rtol=0, atol=0)


def test_head_4d_result_is_the_old_formula_bit_for_bit():
    torch.manual_seed(0)
    backbone = ResNet18(5, width=2, in_channels=1).eval()
    head = MultiScaleHead(backbone.feature_channels, out_dim=5)
    feats = backbone(torch.randn(3, 1, 16, 16)).features
    old = head.out(torch.cat([F.relu(fc(torch.flatten(F.adaptive_avg_pool2d(f, 1), 1)))
                              for f, fc in zip(feats, head.fcs)], dim=1))
    assert torch.equal(head(feats), old)


def test_head_refuses_other_ranks():
    with pytest.raises(ValueError, match=r"shape \[2, 3, 4\] is neither a map"):
        MultiScaleHead([3], 1)([torch.randn(2, 3, 4)])
