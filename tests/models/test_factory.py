import itertools
import pickle
import textwrap

import pytest
import torch
from torch import nn

from tidal.models import (MLP, HookedModel, ResNet18, ResNet50, build_model, check_model_spec, model_capabilities,
                          model_name)

_ids = itertools.count()

USER_MODULE = '''
import torch
from torch import nn
from tidal.models import ModelOutput


def small_cnn(num_classes, in_channels=3):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def vector_net(num_classes, input_shape):
    return nn.Sequential(nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, num_classes))


class Native(nn.Module):
    """Returns ModelOutput itself: used as it is."""

    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Linear(6, 5)
        self.fc = nn.Linear(5, num_classes)
        self.feature_channels, self.embedding_dim = (5,), 5

    def forward(self, x):
        h = torch.relu(self.body(x))
        return ModelOutput(self.fc(h), h, [h])


def not_a_model(num_classes):
    return "resnet"
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = f"user_models_{next(_ids)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_resnet18_is_built_exactly_as_before():
    torch.manual_seed(3)
    built = build_model("resnet18", 10, (1, 28, 28), dropout=0.1, width=4)
    torch.manual_seed(3)
    direct = ResNet18(10, 4, 1, 0.1)
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), direct.state_dict().values()))
    assert isinstance(build_model("auto", 10, (3, 32, 32), width=2), ResNet18)


def test_builtins_and_auto():
    mlp = build_model("auto", 4, (12,))
    assert isinstance(mlp, MLP) and mlp.feature_channels == (256, 256)
    assert isinstance(build_model("resnet50", 4, (3, 32, 32)), ResNet50)
    with pytest.raises(ValueError, match=r"'mlp' needs feature vectors \(D,\), got input_shape=\(3, 8, 8\)"):
        build_model("mlp", 2, (3, 8, 8))
    with pytest.raises(ValueError, match=r"'resnet18' needs image inputs"):
        build_model("resnet18", 2, (5,))
    with pytest.raises(ValueError, match=r"weights='w.pth' is only for model 'resnet50'"):
        build_model("resnet18", 2, (3, 8, 8), weights="w.pth")
    with pytest.raises(ValueError, match=r"not input_shape=\(2, 3\)"):
        build_model("auto", 2, (2, 3))


def test_resnet50_weights_file(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(ResNet50(1000).state_dict(), path)
    model = build_model("resnet50", 3, (3, 32, 32), weights=path)
    assert torch.equal(model.conv1.weight, torch.load(path, weights_only=True)["conv1.weight"])
    assert model.fc.out_features == 3


def test_module_function_specs(user_module):
    cnn = build_model(f"{user_module}:small_cnn", 5, (1, 8, 8))
    assert isinstance(cnn, HookedModel) and cnn.module[0].in_channels == 1  # in_channels passed
    out = cnn(torch.randn(2, 1, 8, 8))
    assert out.logits.shape == (2, 5) and cnn.feature_channels == (4, 8) and cnn.embedding_dim == 8
    vec = build_model(f"{user_module}:vector_net", 3, (6,), dropout=0.2)
    assert vec(torch.randn(2, 6)).logits.shape == (2, 3) and vec.feature_channels == (16,)
    assert model_capabilities(vec) == {"features", "embedding", "logits_from_embedding", "dropout"}
    native = build_model(f"{user_module}:Native", 2, (6,))
    assert not isinstance(native, HookedModel) and native(torch.randn(3, 6)).logits.shape == (3, 2)
    with pytest.raises(ValueError, match="no nn.Dropout"):
        build_model(f"{user_module}:Native", 2, (6,), dropout=0.5)
    with pytest.raises(ValueError, match="returned a str, not an nn.Module"):
        build_model(f"{user_module}:not_a_model", 2, (6,))
    assert model_name(f"{user_module}:small_cnn") == f"{user_module}:small_cnn"


def test_callable_and_instance_specs():
    def factory(num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, num_classes))

    model = build_model(factory, 3, (4,))
    assert isinstance(model, HookedModel) and model.feature_channels == (8,)
    assert model_name(factory) == f"{__name__}:test_callable_and_instance_specs.<locals>.factory"

    torch.manual_seed(0)
    template = factory(3)
    before = [p.clone() for p in template.parameters()]
    a, b = build_model(template, 3, (4,)), build_model(template, 3, (4,))
    assert all(torch.equal(p, q) for p, q in zip(template.parameters(), before))  # the user's instance is untouched
    assert a.module is not template and not torch.equal(a.module[1].weight, template[1].weight)  # re-initialised
    assert not torch.equal(a.module[1].weight, b.module[1].weight)  # a fresh init per build (per AL cycle)
    assert model_name(template) == "torch.nn.modules.container:Sequential"


def test_check_model_spec():
    for ok in ("resnet18", "resnet50", "mlp", "auto", "tidal.models.mlp:MLP", len, nn.Linear(2, 2)):
        check_model_spec(ok)
    with pytest.raises(ValueError, match=r"unknown model spec 'resnet81' \(did you mean 'resnet18'\?\).*'mlp'.*"
                                         r"'package.module:function'"):
        check_model_spec("resnet81")
    with pytest.raises(ValueError, match="cannot import 'no_such_pkg_xyz'"):
        check_model_spec("no_such_pkg_xyz:f")
    with pytest.raises(ValueError, match="has no attribute 'MPL'; did you mean 'MLP'"):
        check_model_spec("tidal.models.mlp:MPL")
    with pytest.raises(ValueError, match="names a tuple, not a function"):
        check_model_spec("tidal.models.factory:INPUT_KINDS")
    with pytest.raises(ValueError, match="model spec 3 is a int"):
        check_model_spec(3)


def test_model_name_is_stable():
    assert model_name("resnet18") == "resnet18"
    assert model_name("auto") == "auto" and model_name("auto", (5,)) == "mlp"
    assert model_name("auto", (1, 2, 2)) == "resnet18"
    assert model_name(MLP) == "tidal.models.mlp:MLP"


def test_capabilities():
    assert model_capabilities(ResNet18(3, 2, 1)) == {"features", "embedding", "logits_from_embedding"}
    assert "dropout" in model_capabilities(MLP(3, 2, dropout=0.3))
    hooked = HookedModel(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)), feature_layers=(),
                         embedding_layer="1", probe_shape=(4,))
    assert model_capabilities(hooked) == {"embedding"}


def test_specs_cross_process_boundaries(user_module):
    # What a spawned worker receives: the spec (and arguments), never a built model is required.
    spec = f"{user_module}:small_cnn"
    assert pickle.loads(pickle.dumps(spec)) == spec
    torch.manual_seed(0)
    model = build_model(spec, 4, (3, 8, 8), dropout=0.1)
    clone = pickle.loads(pickle.dumps(model))  # a built HookedModel of an importable module pickles too
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    clone.eval()
    torch.testing.assert_close(clone(x).logits, model(x).logits)
    torch.testing.assert_close(clone(x).features[0], model(x).features[0])


FAILING_MODELS = '''
import torch
from torch import nn


def wrong_size(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))


def rgb_only(num_classes):
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, num_classes))


class Raises(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        raise RuntimeError("my own failure")


def no_args():
    return nn.Linear(2, 2)


class Empty(nn.Module):
    pass


class NoForward(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
'''


@pytest.mark.parametrize("name,message", [
    ("wrong_size", r"failed when tidal ran it on a batch of 2 zero inputs of shape \(1, 28, 28\) \(10 classes\): "
                   r"RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    ("rgb_only", r"expected input\[2, 1, 28, 28\] to have 3 channels.*the data has 1 channel\(s\): give the model "
                 r"in_channels=1"),
    ("Raises", r"'failing_\d+:Raises' \(Raises\) failed .*: RuntimeError: my own failure; make its forward"),
    ("no_args", r"failed when tidal built it as no_args\(10\) \(10 classes, inputs of shape \(1, 28, 28\)\): "
                r"TypeError: .*takes 0 positional arguments but 1 was given; it must take num_classes"),
    ("Empty", r"failed when tidal built it as Empty\(10\).*TypeError"),
    ("NoForward", r"NotImplementedError: Module \[NoForward\] is missing the required \"forward\" function"),
])
def test_a_user_model_that_fails_is_one_model_error_with_its_message_and_what_tidal_passed(
        tmp_path, monkeypatch, name, message):
    from tidal.errors import ModelError

    module = f"failing_{next(_ids)}"
    (tmp_path / f"{module}.py").write_text(FAILING_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError, match=message) as info:
        build_model(f"{module}:{name}", num_classes=10, input_shape=(1, 28, 28))
    assert "\n" not in str(info.value) and info.value.__cause__ is not None  # one line; the traceback is chained


def test_a_standard_library_function_as_model_is_a_model_error_and_runs_nothing():
    from tidal.errors import ModelError

    with pytest.raises(ModelError, match=r"model 'os:system' failed when tidal built it as system\(10\)"):
        build_model("os:system", num_classes=10, input_shape=(1, 28, 28))


# --- the model registry ------------------------------------------------------------------------

def test_list_models_and_their_metadata():
    from tidal.models import list_models, model_info

    assert list_models() == ["mlp", "resnet18", "resnet50"] and list_models("res*") == ["resnet18", "resnet50"]
    for name in list_models():
        info = model_info(name)
        assert info.name == name and info.description and "\n" not in info.description
        assert info.inputs and set(info.inputs) <= {"images", "vectors"}
    assert [n for n in list_models() if model_info(n).weights] == ["resnet50"]


@pytest.mark.parametrize("spec,message", [
    ("resnet81", r"^unknown model spec 'resnet81' \(did you mean 'resnet18'\?\); use one of 'mlp', 'resnet18', "
                 r"'resnet50', 'auto' or 'package.module:function' naming an importable function"),
    ("resnet", r"^unknown model spec 'resnet' \(did you mean 'resnet18'\?\)"),
    ("vit", r"^unknown model spec 'vit'; use one of 'mlp', "),
])
def test_an_unknown_model_is_one_line_quoting_it(spec, message):
    from tidal.models import model_info

    for call in (lambda: check_model_spec(spec), lambda: build_model(spec, 2, (3, 8, 8)), lambda: model_info(spec)):
        with pytest.raises(ValueError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_registration_refuses_duplicates_and_missing_metadata():
    from tidal.models import list_models, register_model

    def build(num_classes, input_shape, **_):
        raise AssertionError("never called")

    for kwargs, message in [
        (dict(name="resnet18", description="again", inputs=("images",)), "model name 'resnet18' is already registered"),
        (dict(name="new", description="", inputs=("images",)), "needs a one-line description"),
        (dict(name="new", description="a net", inputs=()), r"inputs=\(\) must name some of \('images', 'vectors'\)"),
        (dict(name="new", description="a net", inputs=("audio",)), "must name some of"),
        (dict(name="auto", description="a net", inputs=("images",)), "taken by the spec forms"),
        (dict(name="pkg:fn", description="a net", inputs=("images",)), "taken by the spec forms"),
    ]:
        with pytest.raises(ValueError, match=message):
            register_model(**kwargs)(build)
    with pytest.raises(ValueError, match=r"cannot be called with 2 argument\(s\) and the keywords dropout, width"):
        register_model("strict", "a net", inputs=("vectors",))(lambda num_classes, input_shape: None)
    assert list_models() == ["mlp", "resnet18", "resnet50"]


def test_a_registered_model_is_built_by_name(monkeypatch):
    from tidal.models import factory, list_models, model_name, register_model

    monkeypatch.setattr(factory, "_MODELS", type(factory._MODELS)("model", factory._MODELS._unknown, quote=True))

    @register_model("tiny-mlp", "an MLP of width 8", inputs=("vectors",))
    def tiny(num_classes, input_shape, dropout, **_):
        return MLP(input_shape[0], num_classes, hidden=(8,), dropout=dropout)

    assert list_models() == ["tiny-mlp"] and model_name("tiny-mlp") == "tiny-mlp"
    model = build_model("tiny-mlp", 3, (5,))
    assert isinstance(model, MLP) and model(torch.randn(2, 5)).logits.shape == (2, 3)
    with pytest.raises(ValueError, match=r"model 'tiny-mlp' needs feature vectors \(D,\), got input_shape=\(1, 4, 4\)"):
        build_model("tiny-mlp", 3, (1, 4, 4))
