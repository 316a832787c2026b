"""Any classifier ``nn.Module`` as a TiDAL backbone, through forward hooks.

:class:`HookedModel` wraps a user's module *unchanged* and gives it the package's contract
(``forward(x) -> ModelOutput``, ``feature_channels``, ``embedding_dim``, optionally
``logits_from_embedding``). Hooks on named submodules (names as in ``module.named_modules()``)
copy out what the module computes anyway, so one forward pass serves training, the
auxiliary heads (TiDAL's TD module, Learning Loss) and scoring.

What is read, when not named (``feature_layers=None`` / ``embedding_layer=None``):

* **classifier**: the last ``nn.Linear`` in registration order whose ``out_features`` equals
  the number of classes ``C`` (read from the module's output on a probe batch).
* **embedding** ``[B, D]``: the classifier's *input*, flattened (a forward pre-hook).
* **features**, the first rule that applies:

  1. top-level children ``layer1 .. layer4`` (torchvision / timm ResNet naming): their outputs;
  2. a top-level ``stages``, ``blocks`` or ``features`` container (in that order of preference)
     with ``n`` children: the outputs of all of them when ``n <= 4``, else of the child that
     ends each quarter, positions ``ceil(n * k / 4) - 1`` for ``k = 1..4``;
  3. otherwise the last (up to) 4 activation modules (``nn.ReLU``, ``GELU``, ``SiLU``, ...) that
     run before the classifier, in execution order; if the module has none (it uses
     ``F.relu``), the last 4 ``nn.Conv2d`` / non-classifier ``nn.Linear`` modules instead.

  A feature is a map ``[B, c, h, w]`` or a hidden vector ``[B, d]``; its ``c`` or ``d`` is its
  entry of ``feature_channels``. A module called twice in one forward keeps its last output.

Shapes are found by one probe forward pass at construction on a batch of 2 zero inputs of
``probe_shape``: eval mode, no grad, every submodule's train/eval mode restored afterwards,
and inside ``torch.random.fork_rng`` so the global random state is untouched.

MC dropout (BALD): ``dropout > 0`` inserts a real ``nn.Dropout`` (``self.dropout``) on the
classifier's input through the pre-hook. Like every ``nn.Dropout`` it is the identity in eval
mode and active in train mode or when ``tidal.gather`` switches dropout modules on.

Processes: the wrapper pickles (the hooks are bound methods of the wrapper, so an unpickled
or deep-copied wrapper hooks its own copy of the module); the module inside must pickle too.
A model *spec* (``tidal.models.factory``) is the lighter thing to send to a spawned worker.
The captured tensors live on the wrapper for the length of one forward call, so one wrapper
must not run in several threads at once (``nn.DataParallel``; use one process per device).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from tidal.models.resnet import ModelOutput

__all__ = ["HookedModel", "probe_forward"]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Mish, nn.Tanh, nn.Hardswish)
_CONTAINERS = ("stages", "blocks", "features")
_PROBE_BATCH = 2


def probe_forward(module: nn.Module, probe_shape: Sequence[int], hooks: dict | None = None) -> object:
    """``module(zeros[2, *probe_shape])`` without side effects; returns the raw output.

    Eval mode and no grad; each submodule's mode is restored and the global RNG (CPU and the
    module's CUDA device) is forked, so nothing the caller can observe changes. ``hooks``
    maps submodules to forward hooks that are attached only for this pass.
    """
    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modes = {m: m.training for m in module.modules()}
    handles = [m.register_forward_hook(h) for m, h in (hooks or {}).items()]
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            module.eval()
            return module(torch.zeros(_PROBE_BATCH, *probe_shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def _flatten(t: torch.Tensor) -> torch.Tensor:
    """``[B, c, h, w]`` -> global average pool ``[B, c]``; any other ``[B, ...]`` -> ``[B, prod]``."""
    return torch.flatten(F.adaptive_avg_pool2d(t, 1), 1) if t.dim() == 4 else torch.flatten(t, 1)


class HookedModel(nn.Module):
    """A user's classifier with forward hooks that produce :class:`ModelOutput`.

    Args:
        module: any ``nn.Module`` whose ``forward(x)`` returns logits ``[B, C]``; not modified
            (it becomes the submodule ``self.module``).
        feature_layers: names (from ``module.named_modules()``) whose outputs are the features,
            shallow to deep; ``None`` = auto-detect (module docstring); ``()`` = no features.
        embedding_layer: name of the module whose output (4-D maps average-pooled, then
            flattened) is the embedding; ``None`` = the classifier's input.
        dropout: probability of the ``nn.Dropout`` inserted on the classifier's input (0 = none).
        probe_shape: one input's shape, e.g. ``(3, 32, 32)`` or ``(512,)``.
        num_classes: ``C``; checked against the module's output when given.
        required: what construction must find, of ``"features"`` and ``"embedding"`` (default
            both: a ``ValueError`` naming the children otherwise). What is not required and not
            found is left out (``feature_channels == ()``, ``embedding_dim == 0``, an empty
            ``[B, 0]`` embedding) and its hint kept in ``unavailable``; the model factory
            passes ``required=()`` so that a method that needs neither (random) runs, and the
            experiment refuses, with that hint, a method that needs what is missing.
    """

    def __init__(self, module: nn.Module, feature_layers: Sequence[str] | None = None,
                 embedding_layer: str | None = None, dropout: float = 0.0, *,
                 probe_shape: Sequence[int], num_classes: int | None = None,
                 required: Sequence[str] = ("features", "embedding")) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"module={module!r} is not an nn.Module; pass the classifier network itself")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1)")
        if isinstance(feature_layers, str):
            raise ValueError(f"feature_layers={feature_layers!r} is a string; pass a list of names, "
                             f"e.g. [{feature_layers!r}]")
        self.module = module
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.unavailable: dict[str, str] = {}  # "features" / "embedding" -> why not found and what to pass
        names = {m: name for name, m in module.named_modules()}
        for name in [*(feature_layers or ()), *([embedding_layer] if embedding_layer else [])]:
            self._submodule(name)  # unknown names fail here, before the probe

        # Probe 1: the output's shape gives C; every leaf's output is recorded in execution order.
        record: dict[str, torch.Tensor] = {}
        order: list[str] = []

        def keep(mod: nn.Module, args: tuple, out: object) -> None:
            name = names[mod]
            if name in order:
                order.remove(name)
            order.append(name)
            if isinstance(out, torch.Tensor):
                record[name] = out

        leaves = {m: keep for m in module.modules() if m is not module and not any(True for _ in m.children())}
        out = probe_forward(module, probe_shape, leaves)
        if isinstance(out, ModelOutput):
            raise ValueError(f"{type(module).__name__} already returns ModelOutput; use it without HookedModel")
        if not (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == _PROBE_BATCH
                and (num_classes is None or out.shape[1] == num_classes)):
            want = f"[{_PROBE_BATCH}, {num_classes if num_classes is not None else 'num_classes'}]"
            raise ValueError(f"{type(module).__name__} returned {_describe(out)} for {_PROBE_BATCH} inputs of shape "
                             f"{tuple(probe_shape)}; HookedModel needs logits {want}: make forward return them")
        self.num_classes = int(out.shape[1])

        classifier_name = self._find_classifier(module, order)
        self._classifier_name = classifier_name
        self._embedding_layer = embedding_layer
        if feature_layers is None:
            try:
                feature_layers = self._auto_features(module, order, classifier_name)
            except ValueError as exc:
                if "features" in required:
                    raise
                self.unavailable["features"], feature_layers = str(exc), ()
        self._feature_layers = tuple(feature_layers)
        # logits_from_embedding is exact only when the logits are the classifier's output itself.
        self._head_ok = (classifier_name is not None and embedding_layer is None
                         and classifier_name in record and torch.equal(record[classifier_name], out))
        if embedding_layer is None and classifier_name is None:
            hint = self._children_hint(module, f"found no nn.Linear with out_features={self.num_classes} "
                                               "(the classifier) whose input is the embedding",
                                       "embedding_layer='<name>'")
            if "embedding" in required:
                raise ValueError(hint)
            self.unavailable["embedding"] = hint
        if dropout > 0 and classifier_name is None:
            raise ValueError(f"dropout={dropout} goes on the classifier's input, but {type(module).__name__} has no "
                             f"nn.Linear with out_features={self.num_classes}; pass dropout=0")

        # A plain reference, not a registered child (its parameters stay under ``module.``).
        self.__dict__["_classifier"] = self._submodule(classifier_name) if classifier_name else None
        self._captured: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self._attach()
        # Probe 2 (through our own hooks): the sizes of the features and the embedding.
        try:
            probed = probe_forward(self, probe_shape)
            feats, emb = probed.features, probed.embedding
            for name, f in zip(self._feature_layers, feats):
                if f.dim() not in (2, 4):
                    raise ValueError(f"feature layer {name!r} gives a tensor of shape {list(f.shape)}; features must "
                                     "be maps [B, c, h, w] or vectors [B, d]: pass feature_layers=[...] naming such "
                                     "layers")
        except Exception:
            self.remove_hooks()  # a failed construction leaves the user's module as it was
            raise
        self.feature_channels: tuple[int, ...] = tuple(int(f.shape[1]) for f in feats)
        self.embedding_dim = int(emb.shape[1])

    # -- construction helpers -------------------------------------------------------------

    def _submodule(self, name: str) -> nn.Module:
        modules = dict(self.module.named_modules())
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else \
                f"top-level children: {', '.join(repr(n) for n, _ in self.module.named_children())}"
            raise ValueError(f"{type(self.module).__name__} has no submodule named {name!r}; {hint} "
                             "(names as in module.named_modules())")
        return modules[name]

    def _find_classifier(self, module: nn.Module, order: list[str]) -> str | None:
        """Last ``nn.Linear`` (registration order) with ``out_features == C`` that ran in the probe."""
        linears = [name for name, m in module.named_modules()
                   if isinstance(m, nn.Linear) and m.out_features == self.num_classes and name in order]
        return linears[-1] if linears else None

    @staticmethod
    def _children_hint(module: nn.Module, problem: str, argument: str) -> str:
        children = ", ".join(repr(n) for n, _ in module.named_children()) or "none"
        return (f"{type(module).__name__}: {problem}; its top-level children are {children}: "
                f"pass {argument} (names as in module.named_modules())")

    def _auto_features(self, module: nn.Module, order: list[str], classifier: str | None) -> list[str]:
        children = dict(module.named_children())
        if all(f"layer{i}" in children for i in range(1, 5)):
            return [f"layer{i}" for i in range(1, 5)]
        for container in _CONTAINERS:
            if container in children:
                names = [f"{container}.{n}" for n, _ in children[container].named_children()]
                if names:
                    n = len(names)
                    return names if n <= 4 else [names[math.ceil(n * k / 4) - 1] for k in range(1, 5)]
        before = order[:order.index(classifier)] if classifier in order else order
        modules = dict(module.named_modules())
        picked = [n for n in before if isinstance(modules[n], _ACTIVATIONS)][-4:]
        if not picked:
            picked = [n for n in before if isinstance(modules[n], (nn.Conv2d, nn.Linear))][-4:]
        if not picked:
            raise ValueError(self._children_hint(module, "found no feature layers (no layer1..layer4, stages, "
                                                         "blocks, features, activations or hidden layers)",
                                                 "feature_layers=['<name>', ...] (or feature_layers=() for none)"))
        return picked

    def _attach(self) -> None:
        """Register the hooks; each is a bound method (or a partial of one) so the wrapper pickles."""
        for name in self._feature_layers:
            self._handles.append(self._submodule(name).register_forward_hook(partial(self._save, name)))
        if self._embedding_layer is not None:
            self._handles.append(self._submodule(self._embedding_layer).register_forward_hook(
                partial(self._save, "\0embedding")))
        if self._classifier is not None:
            self._handles.append(self._classifier.register_forward_pre_hook(self._classifier_input))

    # -- hooks ----------------------------------------------------------------------------

    def _save(self, key: str, mod: nn.Module, args: tuple, out: object) -> None:
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"hooked layer {key!r} returned {_describe(out)}, not a tensor; "
                             "name a layer that returns one tensor")
        self._captured[key] = out

    def _classifier_input(self, mod: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if self._embedding_layer is None:
            self._captured["\0embedding"] = x
        return (self.dropout(x), *args[1:])

    def _collect(self, logits: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        captured, self._captured = self._captured, {}
        missing = [n for n in self._feature_layers if n not in captured]
        if "embedding" in self.unavailable:  # none to give: an empty [B, 0] (embedding_dim 0)
            captured["\0embedding"] = logits.new_zeros(logits.shape[0], 0)
        if missing or "\0embedding" not in captured:
            what = missing or [self._embedding_layer or self._classifier_name]
            raise RuntimeError(f"layers {what} did not run in this forward pass of {type(self.module).__name__}; "
                               "name layers that run on every input")
        return [captured[n] for n in self._feature_layers], _flatten(captured["\0embedding"])

    # -- public ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """``x [B, *probe_shape]`` -> logits ``[B, C]``, embedding ``[B, D]``, features (2-D or 4-D)."""
        if not self._handles:
            raise RuntimeError("the hooks of this HookedModel were removed; build a new one to run it")
        self._captured = {}
        logits = self.module(x)
        features, embedding = self._collect(logits)
        return ModelOutput(logits, embedding, features)

    @property
    def logits_from_embedding(self):
        """``emb [B, D] -> logits [B, C]``: ``classifier(dropout(emb))``. Exists (``hasattr``) only
        when the embedding is the classifier's input and the module's logits are its output."""
        if not self._head_ok:
            raise AttributeError("logits_from_embedding: the embedding is not the classifier's input "
                                 "or the logits are not the classifier's output")
        return self._head

    def _head(self, embedding: torch.Tensor) -> torch.Tensor:
        return self._classifier.forward(self.dropout(embedding))  # .forward: skip our pre-hook (no re-capture)

    @property
    def layers(self) -> dict[str, object]:
        """The names in use: ``{"features": [...], "embedding": str, "classifier": str | None}``."""
        emb = self._embedding_layer or (f"input of {self._classifier_name}" if self._classifier_name else None)
        return {"features": list(self._feature_layers), "embedding": emb, "classifier": self._classifier_name}

    def describe(self) -> str:
        """The layers in use, in words: ``features 'layer1', 'layer2' (channels [8, 16]); embedding
        input of 'fc' (dim 16); classifier 'fc'``."""
        emb = (repr(self._embedding_layer) if self._embedding_layer else
               f"input of {self._classifier_name!r}" if self._classifier_name else "none")
        feats = ", ".join(map(repr, self._feature_layers)) or "none"
        return (f"features {feats} (channels {list(self.feature_channels)}); embedding {emb} (dim "
                f"{self.embedding_dim}); classifier {repr(self._classifier_name) if self._classifier_name else 'none'}")

    def remove_hooks(self) -> None:
        """Detach every hook from the wrapped module (it is then exactly the user's module again)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "HookedModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove_hooks()
