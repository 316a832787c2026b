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


def test_weights_are_channels_last_and_layout_does_not_change_the_function():
    torch.manual_seed(0)
    model = ResNet18(10, width=4, in_channels=3).eval()
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)  # 3x3 weights of >1 channel differ in the two layouts
    x = torch.randn(4, 3, 16, 16)
    reference = ResNet18(10, width=4, in_channels=3).eval()
    reference.load_state_dict(model.state_dict())
    reference.to(memory_format=torch.contiguous_format)
    assert all(m.weight.is_contiguous() for m in reference.modules() if isinstance(m, torch.nn.Conv2d))
    torch.testing.assert_close(model(x).logits, reference(x).logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)).logits,
                               reference(x).logits, rtol=1e-4, atol=1e-5)


def test_layout_survives_state_dict_round_trip():
    model = ResNet18(10, width=4, in_channels=1)
    fresh = ResNet18(10, width=4, in_channels=1)
    fresh.load_state_dict(model.state_dict())
    assert fresh.stages[0][0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
