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
