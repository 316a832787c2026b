import argparse

import pytest
import torch

from tidal.models import ResNet50, load_weights


def torchvision_resnet50_shapes(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """torchvision's ``resnet50().state_dict()`` names and shapes, written from the architecture."""

    def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}

    shapes = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    in_planes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for b in range(blocks):
            p = f"layer{i}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, in_planes, 1, 1)
            shapes.update(bn(f"{p}.bn1", planes))
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes.update(bn(f"{p}.bn2", planes))
            shapes[f"{p}.conv3.weight"] = (4 * planes, planes, 1, 1)
            shapes.update(bn(f"{p}.bn3", 4 * planes))
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (4 * planes, in_planes, 1, 1)
                shapes.update(bn(f"{p}.downsample.1", 4 * planes))
            in_planes = 4 * planes
    shapes["fc.weight"] = (num_classes, 2048)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def fake_checkpoint(num_classes: int = 1000) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.tensor(3) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g)
            for k, s in torchvision_resnet50_shapes(num_classes).items()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    state = fake_checkpoint()
    torch.save(state, path)
    return path, state


def test_names_and_shapes_are_torchvision_s():
    expected = torchvision_resnet50_shapes(10)
    assert len(expected) == 320
    got = {k: tuple(v.shape) for k, v in ResNet50(10).state_dict().items()}
    assert got == expected
    for name in ("layer4.2.bn3.running_var", "layer1.0.downsample.1.weight", "fc.bias", "layer3.5.conv2.weight"):
        assert name in got
    assert "layer1.1.downsample.0.weight" not in got


def test_forward_contract():
    model = ResNet50(7, dropout=0.2).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, 7) and out.embedding.shape == (2, 2048) and model.embedding_dim == 2048
    assert [tuple(f.shape[1:]) for f in out.features] == [(256, 8, 8), (512, 4, 4), (1024, 2, 2), (2048, 1, 1)]
    assert model.feature_channels == (256, 512, 1024, 2048)
    torch.testing.assert_close(model.logits_from_embedding(out.embedding), out.logits)
    with pytest.raises(ValueError, match="dropout=1.0"):
        ResNet50(7, dropout=1.0)


def test_load_same_class_count_strict(checkpoint):
    path, state = checkpoint
    model = ResNet50(1000)
    msg = load_weights(model, path)
    assert msg == f"loaded 320 tensors from {str(path)!r}"
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_other_class_count_reinitialises_fc(checkpoint):
    path, state = checkpoint
    model = ResNet50(10)
    msg = load_weights(model, path)
    assert "fc re-initialised for 10 classes (the checkpoint's fc has 1000)" in msg
    assert torch.equal(model.layer4[2].bn3.running_var, state["layer4.2.bn3.running_var"])
    assert model.fc.weight.shape == (10, 2048) and model.fc.weight.abs().max() <= 2048 ** -0.5


def test_wrappers_prefixes_and_old_checkpoints(tmp_path):
    state = fake_checkpoint(5)
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # pre-0.4 torchvision file
    model = ResNet50(5)
    for i, obj in enumerate([{"state_dict": {f"module.{k}": v for k, v in state.items()}},
                             {"model": state, "epoch": 3}, old]):
        path = tmp_path / f"ck{i}.pt"
        torch.save(obj, path)
        model.conv1.weight.data.zero_()
        load_weights(model, path)
        assert torch.equal(model.conv1.weight, state["conv1.weight"])


def test_refusals(tmp_path):
    model = ResNet50(3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_weights(model, tmp_path / "missing.pth")
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint") as err:
        load_weights(model, text)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    custom = tmp_path / "custom.pkl"  # a full pickle: weights_only=True refuses its class
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": fake_checkpoint(3)}, custom)
    with pytest.raises(ValueError, match="it pickles argparse.Namespace, not only tensors"):
        load_weights(model, custom)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(custom.read_bytes()[:100])
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint"):
        load_weights(model, truncated)
    wrong = tmp_path / "wrong.pt"
    state = fake_checkpoint(3)
    state["extra.weight"] = torch.zeros(1)
    del state["layer2.0.conv1.weight"]
    torch.save(state, wrong)
    with pytest.raises(ValueError, match=r"1 missing \(e.g. \['layer2.0.conv1.weight'\]\); 1 unexpected"):
        load_weights(model, wrong)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(ValueError, match="holds no state_dict"):
        load_weights(model, empty)
