import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tidal.models import HookedModel, ModelOutput, MultiScaleHead


class TinyResNetLike(nn.Module):
    """A user's CNN with torchvision-style names (layer1..layer4, fc) and a functional ReLU."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU())
        self.layer3 = nn.Sequential(nn.Conv2d(8, 12, 3, 2, 1), nn.ReLU())
        self.layer4 = nn.Sequential(nn.Conv2d(12, 16, 3, 2, 1), nn.ReLU())
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(F.relu(self.conv1(x))))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def sequential_cnn(num_classes: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.0), nn.Linear(16, num_classes),
    )


def test_resnet_style_names_are_found():
    torch.manual_seed(0)
    model = HookedModel(TinyResNetLike(), probe_shape=(3, 16, 16)).eval()
    assert model.layers == {"features": ["layer1", "layer2", "layer3", "layer4"], "embedding": "input of fc",
                            "classifier": "fc"}
    assert model.feature_channels == (4, 8, 12, 16) and model.embedding_dim == 16 and model.num_classes == 5
    x = torch.randn(3, 3, 16, 16)
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, 5) and out.embedding.shape == (3, 16)
    assert [tuple(f.shape) for f in out.features] == [(3, 4, 16, 16), (3, 8, 8, 8), (3, 12, 4, 4), (3, 16, 2, 2)]
    torch.testing.assert_close(out.logits, model.module(x))  # the module is unchanged
    torch.testing.assert_close(model.logits_from_embedding(out.embedding), out.logits)
    assert MultiScaleHead(model.feature_channels, 5)(out.features).shape == (3, 5)


def test_explicit_names():
    model = HookedModel(TinyResNetLike(), feature_layers=["layer2", "layer4.0"], embedding_layer="layer3",
                        probe_shape=(3, 16, 16))
    out = model(torch.randn(2, 3, 16, 16))
    assert model.feature_channels == (8, 16) and [f.shape[1] for f in out.features] == [8, 16]
    assert model.embedding_dim == 12 and out.embedding.shape == (2, 12)  # layer3's map, average-pooled
    assert not hasattr(model, "logits_from_embedding")  # the embedding is not the classifier's input


def test_plain_sequential_takes_the_last_activations():
    model = HookedModel(sequential_cnn(), probe_shape=(1, 8, 8))
    assert model.layers["features"] == ["1", "4", "8"] and model.layers["classifier"] == "10"
    out = model(torch.randn(2, 1, 8, 8))
    assert [tuple(f.shape) for f in out.features] == [(2, 4, 8, 8), (2, 8, 4, 4), (2, 16)]
    assert model.feature_channels == (4, 8, 16) and model.embedding_dim == 16
    head = MultiScaleHead(model.feature_channels, 1)
    assert head(out.features).shape == (2, 1)  # 4-D maps and a 2-D hidden vector together


def test_stages_container_is_used():
    class Staged(nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = nn.Sequential(*[nn.Conv2d(2 if i == 0 else 3, 3, 3, padding=1) for i in range(6)])
            self.head = nn.Linear(3, 4)

        def forward(self, x):
            return self.head(self.stages(x).mean((2, 3)))

    model = HookedModel(Staged(), probe_shape=(2, 4, 4))
    assert model.layers["features"] == ["stages.1", "stages.2", "stages.4", "stages.5"]  # ceil(6k/4) - 1


def test_wrong_layer_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"no submodule named 'layer5'.*did you mean 'layer.'"):
        HookedModel(TinyResNetLike(), feature_layers=["layer1", "layer5"], probe_shape=(3, 16, 16))
    with pytest.raises(ValueError, match="no submodule named 'layer_3'.*'layer3'"):
        HookedModel(TinyResNetLike(), embedding_layer="layer_3", probe_shape=(3, 16, 16))


def test_output_that_is_not_logits_is_refused():
    with pytest.raises(ValueError, match=r"returned a tensor of shape \[2, 8, 4, 4\].*logits \[2, num_classes\]"):
        HookedModel(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()), probe_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"logits \[2, 7\]"):
        HookedModel(sequential_cnn(3), probe_shape=(1, 8, 8), num_classes=7)


def test_no_classifier_and_no_features_name_the_children():
    class NoLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv2d(1, 3, 1)

        def forward(self, x):
            return self.body(x).mean((2, 3))

    with pytest.raises(ValueError, match=r"children are 'body': pass embedding_layer="):
        HookedModel(NoLinear(), feature_layers=["body"], probe_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"found no feature layers.*children are '0'.*feature_layers="):
        HookedModel(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), probe_shape=(1, 2, 2))


def test_probe_leaves_rng_and_modes_untouched():
    net = sequential_cnn()
    net.train()
    net[1].eval()  # a mixed state must come back as it was
    modes = [m.training for m in net.modules()]
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    HookedModel(net, probe_shape=(1, 8, 8), dropout=0.5)
    assert torch.equal(torch.rand(5), expected)
    assert [m.training for m in net.modules()] == modes


def test_dropout_only_on_the_classifier_input_and_only_when_active():
    torch.manual_seed(0)
    model = HookedModel(TinyResNetLike(), probe_shape=(3, 8, 8), dropout=0.5)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5
    x = torch.randn(4, 3, 8, 8)
    model.eval()
    out = model(x)
    torch.testing.assert_close(out.logits, model.module.fc.forward(out.embedding))  # eval: no dropout
    torch.testing.assert_close(model.logits_from_embedding(out.embedding), out.logits)  # eval: deterministic
    model.train()
    a, b = model(x), model(x)
    torch.testing.assert_close(a.features[-1], b.features[-1])  # the backbone is not dropped (no BN here)
    torch.testing.assert_close(a.embedding, out.embedding)  # the embedding is taken before the dropout
    assert not torch.allclose(a.logits, b.logits)
    model.eval()
    model.dropout.train()  # what tidal.gather's _set_dropout does for MC dropout
    assert not torch.allclose(model.logits_from_embedding(out.embedding), model.logits_from_embedding(out.embedding))


def test_hooks_are_removed():
    net = TinyResNetLike()
    with HookedModel(net, probe_shape=(3, 8, 8), dropout=0.2) as model:
        model(torch.randn(1, 3, 8, 8))
        assert net.fc._forward_pre_hooks and net.layer1._forward_hooks
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    with pytest.raises(RuntimeError, match="hooks .* were removed"):
        model(torch.randn(1, 3, 8, 8))


def test_pickle_and_deepcopy_keep_working_hooks():
    torch.manual_seed(0)
    model = HookedModel(sequential_cnn(), probe_shape=(1, 8, 8), dropout=0.1).eval()
    x = torch.randn(2, 1, 8, 8)
    ref = model(x)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        out = clone(x)
        torch.testing.assert_close(out.logits, ref.logits)
        torch.testing.assert_close(out.features[0], ref.features[0])
        assert clone._classifier is clone.module[10]  # hooks the copy, not the original
        assert len(clone.module[10]._forward_pre_hooks) == 1 and len(model.module[10]._forward_pre_hooks) == 1


def test_state_dict_has_the_module_parameters_once():
    model = HookedModel(TinyResNetLike(), probe_shape=(3, 8, 8))
    keys = list(model.state_dict())
    assert all(k.startswith("module.") for k in keys) and len(keys) == len(TinyResNetLike().state_dict())


def test_bad_feature_shape_is_refused_and_leaves_no_hooks():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):  # x [B, 5, 4] tokens
            return self.head(self.embed(x).mean(1))

    net = Tokens()
    with pytest.raises(ValueError, match=r"feature layer 'embed' gives a tensor of shape \[2, 5, 6\]"):
        HookedModel(net, feature_layers=["embed"], probe_shape=(5, 4))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    model = HookedModel(net, feature_layers=(), probe_shape=(5, 4))  # no features: embedding and logits only
    assert model.feature_channels == () and model.embedding_dim == 6


def test_the_readme_hooked_model_example_runs_as_written(capsys):
    """The README's HookedModel block, executed as it is printed there (issue 21, case 25)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"<!-- tests/models/test_hooks.py runs this block -->\n```python\n(.*?)```", readme, re.S)
    assert block is not None, "the README lost its HookedModel example"
    scope: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), scope)
    out = scope["out"]
    assert out.logits.shape == (4, 10) and out.embedding.shape == (4, 16) and len(out.features) == 2
    printed = capsys.readouterr().out.strip()
    assert printed == "features '1', '3' (channels [8, 16]); embedding '5' (dim 16); classifier '6'"
    assert re.search(r"print\(hooked.describe\(\)\)  # " + re.escape(printed), block.group(1))


def test_without_requirements_a_classifier_lacking_linear_or_features_still_wraps():
    """The factory wraps with required=(): what is missing is left out and explained, so a method
    that needs neither (random) runs on it (issue 21, case 16)."""
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    hooked = HookedModel(net, feature_layers=["0"], probe_shape=(1, 8, 8), required=())
    out = hooked(torch.zeros(2, 1, 8, 8))
    assert out.logits.shape == (2, 3) and out.embedding.shape == (2, 0) and hooked.embedding_dim == 0
    assert "found no nn.Linear with out_features=3" in hooked.unavailable["embedding"]
    bare = HookedModel(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), probe_shape=(1, 2, 2), required=())
    assert bare.feature_channels == () and "found no feature layers" in bare.unavailable["features"]
