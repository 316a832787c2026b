import pytest
import torch

from tidal.models import MultiScaleHead, ResNet18


@pytest.mark.parametrize("width,in_ch,size", [(4, 1, 28), (8, 3, 32), (2, 3, 20)])
def test_outputs_and_taps(width, in_ch, size):
    model = ResNet18(num_classes=7, width=width, in_channels=in_ch).eval()
    out = model(torch.randn(3, in_ch, size, size))
    assert out.logits.shape == (3, 7)
    assert out.embedding.shape == (3, 8 * width) and model.embedding_dim == 8 * width
    assert [f.shape[1] for f in out.features] == [width, 2 * width, 4 * width, 8 * width]
    assert list(model.feature_channels) == [width, 2 * width, 4 * width, 8 * width]
    assert out.features[0].shape[-1] == size  # 3x3 stride-1 stem, no max-pool


def test_paper_width_parameter_count():
    # CIFAR ResNet-18 at width 64 has about 11.17M parameters.
    n = sum(p.numel() for p in ResNet18(10, 64, 3).parameters())
    assert 11_100_000 < n < 11_250_000


def test_bad_arguments():
    with pytest.raises(ValueError, match="width=0"):
        ResNet18(10, width=0)
    with pytest.raises(ValueError, match="dropout=1.5"):
        ResNet18(10, dropout=1.5)


@pytest.mark.parametrize("width,size", [(2, 28), (4, 32), (8, 16)])
def test_head_infers_sizes_from_the_backbone(width, size):
    model = ResNet18(5, width, 1).eval()
    head = MultiScaleHead(model.feature_channels, out_dim=5)
    out = model(torch.randn(2, 1, size, size))
    assert head(out.features).shape == (2, 5)
    assert [fc.in_features for fc in head.fcs] == list(model.feature_channels)
    assert all(fc.out_features == 128 for fc in head.fcs) and head.out.in_features == 4 * 128
    assert MultiScaleHead(model.feature_channels, out_dim=1)(out.features).shape == (2, 1)


def test_head_rejects_wrong_number_of_maps():
    head = MultiScaleHead([2, 4], 3)
    with pytest.raises(ValueError, match="got 1 feature maps"):
        head([torch.randn(1, 2, 4, 4)])
