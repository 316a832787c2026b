"""One place that turns a model spec into a model with the ModelOutput contract.

A *spec* is one of:

a name           registered with :func:`register_model` (``tidal models``): ``resnet18`` (CIFAR-style,
                 built as the loop always built it), ``resnet50`` (ImageNet layout), ``mlp`` (vectors);
``"auto"``       ``resnet18`` for images, ``mlp`` for vectors;
``"pkg.mod:fn"`` an importable function (or class) called as ``fn(num_classes)``, plus
                 ``input_shape=`` and (images) ``in_channels=`` when its signature names them;
a callable       the same, without the import;
an ``nn.Module`` instance: deep-copied and every submodule with ``reset_parameters``
                 re-initialised (from the global RNG), so each active-learning cycle trains
                 from scratch like the built-ins.

A user model whose forward returns logits is wrapped in :class:`~tidal.models.HookedModel`
(hooks find its features and embedding); one that returns ``ModelOutput`` is used as it is.
To run in spawned worker processes send the spec (a string, or an importable function),
not a built model: :func:`build_model` in the worker gives the same model for the same seed.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tidal.errors import ModelError
from tidal.models.hooks import _PROBE_BATCH, HookedModel, probe_forward
from tidal.models.mlp import MLP
from tidal.models.resnet import ModelOutput, ResNet18
from tidal.models.resnet50 import ResNet50, load_weights
from tidal.registry import Registry, check_callable

__all__ = ["AUTO_MODELS", "INPUT_KINDS", "ModelInfo", "build_model", "check_model_spec", "describe_layers",
           "list_models", "model_capabilities", "model_info", "model_name", "raised_in_user_code", "register_model"]

INPUT_KINDS = ("images", "vectors")  # what one input is: an image (C, H, W) or a feature vector (D,)
_KIND_OF_DIMS = {3: "images", 1: "vectors"}  # number of dimensions of one input -> its kind
_WORDS = {"images": ("image inputs (C, H, W)", "images"), "vectors": ("feature vectors (D,)", "feature vectors")}
_AUTO = "auto"
AUTO_MODELS = {"images": "resnet18", "vectors": "mlp"}  # what "auto" builds for each input kind

ModelSpec = str | Callable[..., nn.Module] | nn.Module


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: how ``tidal models`` lists it and how :func:`build_model` builds it."""

    name: str  # the spec string (``--model NAME``)
    build: Callable[..., nn.Module]  # build(num_classes, input_shape, dropout=, width=, weights=) -> the model
    description: str  # one line for ``tidal models``
    inputs: tuple[str, ...]  # the kinds of input it takes (INPUT_KINDS)
    weights: bool = False  # whether it loads a checkpoint file (``weights=``, ``--weights``)


_MODELS: Registry[ModelInfo] = Registry(
    "model", "unknown model spec {name!r}{hint}; use one of {names} or 'package.module:function' naming an "
    "importable function that returns an nn.Module", preferred=("resnet18",), also=("auto",), quote=True)


def register_model(name: str, description: str, inputs: Sequence[str], weights: bool = False) -> Callable:
    """Decorator: ``build(num_classes, input_shape, *, dropout, width, weights)`` (``**_`` for the keywords
    it ignores) becomes the model ``name`` for ``inputs`` (INPUT_KINDS); it returns a module that gives
    ``ModelOutput`` and has ``feature_channels`` and ``embedding_dim``. Register at import time (module
    top level), so that ``--jobs`` workers, which import your module, know the name too."""
    def add(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if ":" in name or name == _AUTO:
            raise ValueError(f"model name {name!r} is taken by the spec forms 'auto' and 'package.module:function'")
        if not inputs or set(inputs) - set(INPUT_KINDS):
            raise ValueError(f"model {name!r}: inputs={tuple(inputs)} must name some of {INPUT_KINDS}")
        check_callable(f"model {name!r}", build, 2, ("dropout", "width", "weights"))
        _MODELS.add(name, ModelInfo(name, build, description, tuple(inputs), weights), description)
        return build
    return add


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted (``"auto"`` is not one)."""
    return _MODELS.names(pattern)


def model_info(name: str) -> ModelInfo:
    """The registered model ``name``; unknown names raise a ``ValueError`` listing the valid ones."""
    return _MODELS[name]


@register_model("resnet18", "the paper's CIFAR-style ResNet-18 (--width sets its first stage)", inputs=("images",))
def _resnet18(num_classes: int, input_shape: tuple[int, ...], dropout: float, width: int, **_) -> nn.Module:
    return ResNet18(num_classes, width, input_shape[0], dropout)  # as the loop always built it


@register_model("resnet50", "ResNet-50 in the ImageNet layout; --weights loads a torchvision/timm checkpoint",
                inputs=("images",), weights=True)
def _resnet50(num_classes: int, input_shape: tuple[int, ...], dropout: float, weights: str | Path | None,
              **_) -> nn.Module:
    model = ResNet50(num_classes, input_shape[0], dropout)
    if weights is not None:
        load_weights(model, weights)
    return model


@register_model("mlp", "a perceptron with two hidden layers of 256 units, for feature vectors", inputs=("vectors",))
def _mlp(num_classes: int, input_shape: tuple[int, ...], dropout: float, **_) -> nn.Module:
    return MLP(input_shape[0], num_classes, dropout=dropout)


def _resolve(spec: str) -> Callable[..., nn.Module]:
    """Import ``"package.module:qualname"`` and return the callable it names."""
    module_name, _, qualname = spec.partition(":")
    if not module_name or not qualname:
        raise _MODELS.unknown(spec)
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model spec {spec!r}: cannot import {module_name!r} ({err}); "
                         "install it or put its folder on PYTHONPATH") from None
    for part in qualname.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else "check the name after ':'"
            owner = getattr(obj, "__name__", obj)
            raise ValueError(f"model spec {spec!r}: {owner!r} has no attribute {part!r}; {hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model spec {spec!r} names a {type(obj).__name__}, not a function; "
                         "name a function (or class) that takes num_classes and returns an nn.Module")
    return obj


def check_model_spec(spec: ModelSpec) -> None:
    """Validate ``spec`` without building anything; raises ``ValueError`` saying what to pass."""
    if isinstance(spec, str):
        if spec != _AUTO and spec not in _MODELS:
            if ":" not in spec:
                raise _MODELS.unknown(spec)
            _resolve(spec)
    elif not (isinstance(spec, nn.Module) or callable(spec)):
        raise ValueError(f"model spec {spec!r} is a {type(spec).__name__}; pass a name ({', '.join(list_models())}, "
                         f"{_AUTO}), 'package.module:function', a function or an nn.Module")


def _auto(input_shape: Sequence[int]) -> str:
    kind = _KIND_OF_DIMS.get(len(input_shape))
    if kind is None:
        raise ValueError(f"model 'auto' knows images (C, H, W) and vectors (D,), not input_shape={tuple(input_shape)}; "
                         "pass a model spec")
    return AUTO_MODELS[kind]


def model_name(spec: ModelSpec, input_shape: Sequence[int] | None = None) -> str:
    """A stable string for the results database: the built-in name (``"auto"`` resolved when
    ``input_shape`` is given), the ``module:function`` string, or ``module:qualname`` of a
    callable or of an instance's class."""
    check_model_spec(spec)
    if isinstance(spec, str):
        return _auto(input_shape) if spec == _AUTO and input_shape is not None else spec
    target = type(spec) if isinstance(spec, nn.Module) else spec
    target = getattr(target, "func", target)  # functools.partial: name the function it wraps
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__qualname__)}"


def _call_user(fn: Callable[..., nn.Module], num_classes: int, input_shape: tuple[int, ...],
               label: str | None = None) -> nn.Module:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: call with num_classes only
        params = {}
    kwargs = {}
    if "input_shape" in params:
        kwargs["input_shape"] = input_shape
    if "in_channels" in params and len(input_shape) == 3:  # images only: a vector has no channels
        kwargs["in_channels"] = input_shape[0]
    try:
        model = fn(num_classes, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's code: any failure is reported as the model's
        call = ", ".join([str(num_classes), *(f"{k}={v!r}" for k, v in kwargs.items())])
        raise ModelError(f"model {label or model_name(fn)!r} failed when tidal built it as "
                         f"{getattr(fn, '__name__', 'model')}"
                         f"({call}) ({num_classes} classes, inputs of shape {input_shape}): {_message(exc)}; it must "
                         "take num_classes (and may take input_shape=, in_channels=) and return an nn.Module") from exc
    if not isinstance(model, nn.Module):
        raise ValueError(f"model function {model_name(fn)} returned a {type(model).__name__}, not an nn.Module; "
                         "make it return the network")
    return model


def _reinitialised(module: nn.Module) -> nn.Module:
    model = copy.deepcopy(module)
    for m in model.modules():
        if callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
    return model


def _message(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def raised_in_user_code(exc: BaseException) -> bool:
    """Whether ``exc``'s traceback passes through code outside tidal, torch and the standard
    library (a model of yours), so that a failure there is the model's, not tidal's."""
    import os
    import sysconfig

    import torch

    ours = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(torch.__file__),
            sysconfig.get_paths()["stdlib"]]
    tb = exc.__traceback__
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not path.startswith("<") and not any(path.startswith(root) for root in ours):
            return True
        tb = tb.tb_next
    return False


def _model_failed(model: nn.Module, num_classes: int, input_shape: tuple[int, ...], exc: Exception,
                  label: str | None) -> ModelError:
    channels = ""
    if len(input_shape) == 3 and "channel" in str(exc):
        channels = (f"; the data has {input_shape[0]} channel(s): give the model in_channels={input_shape[0]} "
                    "(a function taking in_channels= gets it)")
    name = f"{label!r} ({type(model).__name__})" if label else type(model).__name__
    return ModelError(f"model {name} failed when tidal ran it on a batch of {_PROBE_BATCH} zero inputs "
                      f"of shape {input_shape} ({num_classes} classes): {_message(exc)}{channels}; make its forward "
                      "take such a batch and return logits [batch, classes] (TIDAL_DEBUG=1 shows the traceback)")


def _contract(model: nn.Module, num_classes: int, input_shape: tuple[int, ...], dropout: float,
              label: str | None = None, feature_layers: Sequence[str] | None = None,
              embedding_layer: str | None = None) -> nn.Module:
    """Use ``model`` as it is when it returns ModelOutput, else wrap it in HookedModel (which
    requires nothing: what it cannot find is refused per method by the experiment). The user's
    forward failing on the probe batch is a :class:`~tidal.errors.ModelError`."""
    try:
        out = probe_forward(model, input_shape)
    except Exception as exc:  # noqa: BLE001 - the user's code: any failure is reported as the model's
        raise _model_failed(model, num_classes, input_shape, exc, label) from exc
    if isinstance(out, ModelOutput):
        if feature_layers is not None or embedding_layer is not None:
            raise ValueError(f"feature_layers / embedding_layer name layers for TiDAL's hooks, but model "
                             f"{label or type(model).__name__!r} returns ModelOutput itself (its own features and "
                             "embedding); drop --feature-layers / --embedding-layer")
        if dropout > 0 and not any(isinstance(m, nn.Dropout) for m in model.modules()):
            raise ValueError(f"dropout={dropout}: {type(model).__name__} returns ModelOutput itself, so no dropout can "
                             "be inserted and it has no nn.Dropout; add one before its classifier or pass dropout=0")
        return model
    try:
        return HookedModel(model, feature_layers=feature_layers, embedding_layer=embedding_layer, dropout=dropout,
                           probe_shape=input_shape, num_classes=num_classes, required=())
    except (ValueError, ModelError):
        raise
    except Exception as exc:  # noqa: BLE001 - the user's forward failed under the hooks' probe
        raise _model_failed(model, num_classes, input_shape, exc, label) from exc


def build_model(spec: ModelSpec, num_classes: int, input_shape: Sequence[int], dropout: float = 0.0,
                width: int = 64, weights: str | Path | None = None, feature_layers: Sequence[str] | None = None,
                embedding_layer: str | None = None) -> nn.Module:
    """Build the model ``spec`` names (module docstring) for ``num_classes`` and one input of ``input_shape``.

    Args:
        spec: a registered name (:func:`list_models`), ``"auto"``, ``"package.module:function"``, a callable
            or an ``nn.Module``.
        num_classes: ``C``.
        input_shape: one input's shape, ``(C_in, H, W)`` or ``(D,)`` (the split's ``input_shape``).
        dropout: dropout before the classifier (BALD's MC dropout); inserted by hooks for user models.
        width: first-stage width of ``resnet18`` (64 in the paper); ignored by the others.
        weights: checkpoint file for a model registered with ``weights=True`` (``resnet50``:
            torchvision/timm names); an error for the others.
        feature_layers, embedding_layer: for a model of yours, the layers TiDAL's hooks read
            (:class:`~tidal.models.HookedModel`; None: found automatically); an error for the
            built-ins, which give their own.

    Returns an ``nn.Module`` whose forward gives ``ModelOutput`` and which has
    ``feature_channels`` and ``embedding_dim``.
    """
    check_model_spec(spec)
    input_shape = tuple(int(s) for s in input_shape)
    name = _auto(input_shape) if spec == _AUTO else spec
    info = _MODELS[name] if isinstance(name, str) and name in _MODELS else None
    if (feature_layers is not None or embedding_layer is not None) and info is not None:
        raise ValueError(f"feature_layers / embedding_layer name layers of a model of yours (--model "
                         f"package.module:function); the built-in {name!r} gives its own features and embedding: "
                         "drop --feature-layers / --embedding-layer")
    if weights is not None and not (info is not None and info.weights):
        takes = " or ".join(repr(n) for n in list_models() if _MODELS[n].weights)
        raise ValueError(f"weights={str(weights)!r} is only for model {takes}, not {model_name(spec)!r}; "
                         "load other weights inside your model function")
    if info is not None:
        kind = _KIND_OF_DIMS.get(len(input_shape))
        if kind not in info.inputs:
            other = next((k for k in INPUT_KINDS if k not in info.inputs), None)
            fix = f"; use {AUTO_MODELS[other]!r} (or 'auto') for {_WORDS[other][1]}" if other else ""
            raise ValueError(f"model {name!r} needs {' or '.join(_WORDS[k][0] for k in info.inputs)}, got "
                             f"input_shape={input_shape}{fix}")
        return info.build(num_classes, input_shape, dropout=dropout, width=width, weights=weights)
    if isinstance(spec, nn.Module):
        model = _reinitialised(spec)
    else:
        model = _call_user(_resolve(spec) if isinstance(spec, str) else spec, num_classes, input_shape,
                           spec if isinstance(spec, str) else None)
    return _contract(model, num_classes, input_shape, dropout, spec if isinstance(spec, str) else None,
                     feature_layers, embedding_layer)


def describe_layers(model: nn.Module) -> str | None:
    """The layers TiDAL's hooks read from a model of yours, in words (None for a model that
    gives ``ModelOutput`` itself, such as the built-ins)."""
    return model.describe() if isinstance(model, HookedModel) else None


def model_capabilities(model: nn.Module) -> set[str]:
    """What ``model`` can give a strategy, so the loop can refuse early:

    ``"features"`` (non-empty ``feature_channels``: TiDAL, Learning Loss, TA-VAAL),
    ``"embedding"`` (``embedding_dim``: Coreset, BADGE), ``"logits_from_embedding"``
    (one-pass MC dropout), ``"dropout"`` (an ``nn.Dropout`` with ``p > 0``: BALD).
    """
    caps = set()
    if tuple(getattr(model, "feature_channels", ()) or ()):
        caps.add("features")
    if getattr(model, "embedding_dim", None):
        caps.add("embedding")
    if hasattr(model, "logits_from_embedding"):
        caps.add("logits_from_embedding")
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        caps.add("dropout")
    return caps
