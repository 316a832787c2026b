"""train_model: weights that stop being numbers stop the run before anyone evaluates them."""

import types

import pytest
import torch
from torch import nn

from tidal.config import TrainConfig
from tidal.errors import TrainingDivergedError
from tidal.train import train_model


class _Linear(nn.Module):
    """The smallest model train_model accepts: images in, ``.logits`` out."""

    def __init__(self, pixels: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(pixels, classes)

    def forward(self, x: torch.Tensor) -> types.SimpleNamespace:
        return types.SimpleNamespace(logits=self.fc(x.flatten(1)))


def test_non_finite_weights_after_the_last_step_are_an_error(tiny_splits):
    # One batch, one epoch: the loss is taken before the only step, so it is finite; the step
    # with an infinite learning rate leaves NaN weights, which would evaluate to chance accuracy.
    train = tiny_splits.train
    model = _Linear(train.images[0].numel(), train.num_classes)
    config = TrainConfig(epochs=1, lr=float("inf"), batch_size=64, crop_padding=0, flip=False)
    with pytest.raises(TrainingDivergedError, match="weights became NaN or infinite"):
        train_model(model, None, train, torch.arange(32), config, torch.Generator().manual_seed(0))


def test_finite_training_passes_the_check(tiny_splits):
    train = tiny_splits.train
    model = _Linear(train.images[0].numel(), train.num_classes)
    stats = train_model(model, None, train, torch.arange(32), TrainConfig(epochs=1, batch_size=64, crop_padding=0),
                        torch.Generator().manual_seed(0))
    assert stats.final_loss == stats.final_loss


_ODD_BATCHES = """
import torch
from tidal.config import TrainConfig
from tidal.data.dataset import ImageDataset
from tidal.models.factory import build_model
from tidal.train import train_model

torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=g)
labels = torch.arange(40) % 10
train = ImageDataset(images, labels, num_classes=10, mean=(0.5,), std=(0.25,))
model = build_model("resnet18", 10, (1, 28, 28), width=8)
# 23 samples in batches of 8: 8, 8, 7 (odd); one epoch of 7 alone as well.
for n in (23, 7):
    stats = train_model(model, None, train, torch.arange(n), TrainConfig(epochs=2, batch_size=8),
                        torch.Generator().manual_seed(1))
    assert stats.final_loss == stats.final_loss
print("trained")
"""


def test_odd_batches_of_the_resnet_train_on_the_cpu():
    # torch 2.13.0+cpu's oneDNN corrupts the heap in the backward pass of the channels-last
    # ResNet's strided 1x1 shortcuts on an odd batch with 2 threads (AVX-512; on AVX2 for any
    # batch); tidal.kernels must keep the process alive. In a child process, so that a crash
    # fails this test rather than the whole suite.
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([sys.executable, "-c", _ODD_BATCHES], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0 and "trained" in run.stdout, (run.returncode, run.stderr[-2000:])


def test_an_odd_cpu_batch_trains_without_warnings(tiny_splits):
    """Issue 21 case 20: the odd-batch workaround (oneDNN switched off per step) made torch print a
    TF32 UserWarning on every CPU run with an odd batch; tidal.kernels replaced it and warns nothing."""
    import warnings

    from tidal.models.factory import build_model

    train = tiny_splits.train
    model = build_model("resnet18", train.num_classes, train.input_shape, width=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_model(model, None, train, torch.arange(7), TrainConfig(epochs=1, batch_size=8, width=2),
                    torch.Generator().manual_seed(0))
