"""ImageNet-layout ResNet-50 (He et al. 2016) whose weights load from torchvision or timm.

Layout: 7x7 stride-2 stem, 3x3 stride-2 max-pool, Bottleneck blocks ``[3, 4, 6, 3]`` at widths
``64, 128, 256, 512`` with expansion 4 (stage outputs 256, 512, 1024, 2048 channels), the
stride on the 3x3 convolution ("ResNet v1.5", as torchvision and timm). Every parameter and
buffer has torchvision's ``resnet50`` name (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ``fc``; 320 state-dict entries), so their checkpoints load with
``strict=True`` (:func:`load_weights`). We do not need torchvision.

Like :class:`tidal.models.ResNet18` one forward pass returns the logits, the pooled 2048-d
embedding and the four stage outputs, and the weights are stored channels-last.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from tidal.models.resnet import ModelOutput

__all__ = ["Bottleneck", "ResNet50", "load_weights"]


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride here) -> 1x1 expand (x4), each with BN; ReLU after the sum."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    """ResNet-50, ImageNet layout, torchvision parameter names.

    Args:
        num_classes: size of the classifier output ``C`` (1000 for ImageNet checkpoints).
        in_channels: image channels (3 for pretrained weights).
        dropout: dropout probability before ``fc`` (0 = none; BALD's MC dropout uses it).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes={num_classes}, in_channels={in_channels} must both be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1)")
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes, widths = 64, []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            stride = 1 if i == 0 else 2
            layer = [Bottleneck(in_planes, planes, stride)]
            in_planes = planes * Bottleneck.expansion
            layer += [Bottleneck(in_planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            widths.append(in_planes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_planes, num_classes)
        self.feature_channels: tuple[int, ...] = tuple(widths)  # 256, 512, 1024, 2048
        self.embedding_dim = in_planes  # 2048
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """``x``: float ``[B, in_channels, H, W]`` (224x224 for ImageNet weights; any side >= 32)."""
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = layer(out)
            features.append(out)
        embedding = torch.flatten(self.avgpool(out), 1)
        return ModelOutput(self.logits_from_embedding(embedding), embedding, features)

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """Dropout (if any) then ``fc``: ``[B, 2048] -> [B, C]``."""
        return self.fc(self.dropout(embedding))


_WRAPPERS = ("state_dict", "model", "model_state_dict")


def _state_dict(obj: object, path: str) -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict": ...}`` / ``{"model": ...}`` and strip ``module.`` prefixes."""
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj = obj[key]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{path!r} holds no state_dict (found {keys}); save one with "
                         "torch.save(model.state_dict(), path)")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _reason(err: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` failed (torch's own text is long)."""
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"it pickles {found.group(1)}, not only tensors"
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0].split(". ")[0] if lines else type(err).__name__)[:200]


def load_weights(model: ResNet50, path: str | Path) -> str:
    """Load a torchvision/timm ``resnet50`` checkpoint into ``model``; returns what was done.

    ``path`` is read with ``torch.load(map_location="cpu", weights_only=True)``; a raw
    state_dict, ``{"state_dict": ...}``, ``{"model": ...}`` and ``module.``-prefixed keys
    are accepted. Every key (BN's ``num_batches_tracked`` may be absent) must match in name
    and shape (``strict=True``), except ``fc`` when ``model``'s class count differs: ``fc`` is
    then re-initialised, as the returned message says.
    """
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"weights file {path!r} does not exist; pass the path of a resnet50 state_dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unpickler errors all mean "not a plain checkpoint"
        raise ValueError(f"{path!r} is not a PyTorch checkpoint of tensors ({_reason(err)}); save the weights "
                         "with torch.save(model.state_dict(), path)") from None
    state = _state_dict(obj, path)
    own = model.state_dict()
    fc_note = ""
    if "fc.weight" in state and state["fc.weight"].shape != own["fc.weight"].shape:
        fc_note = (f"; fc re-initialised for {model.fc.out_features} classes "
                   f"(the checkpoint's fc has {state['fc.weight'].shape[0]})")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = {k: v for k, v in own.items() if not k.startswith("fc.")}
    # Checkpoints saved before PyTorch 0.4 (torchvision's original resnet50) lack the BN counters;
    # load_state_dict fills them in, so they are not "missing".
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                 f"{len(shapes)} of another shape (e.g. {shapes[:2]})" if shapes else ""]
        raise ValueError(f"{path!r} does not match this ResNet50: keys {'; '.join(p for p in parts if p)}; "
                         "pass a torchvision or timm resnet50 state_dict (in_channels=3)")
    model.load_state_dict(state, strict=not fc_note)
    if fc_note:
        model.fc.reset_parameters()
    return f"loaded {len(state)} tensors from {path!r}{fc_note}"
