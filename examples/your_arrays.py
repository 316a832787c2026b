"""TiDAL on your own arrays with your own network, in a few minutes on a CPU.

    python examples/your_arrays.py

Replace the synthetic arrays with yours: images as uint8 numpy arrays N x H x W (grey) or
N x H x W x C, labels as integers 0..C-1 (or 2-D float arrays of features with model="mlp").
"""

import numpy as np
from torch import nn

import tidal
from tidal.data import from_arrays


def small_cnn(num_classes: int) -> nn.Module:
    """Your network, unchanged: tidal finds its layers with forward hooks."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """4 classes of noisy 24x24 RGB images: a faint red, green or blue square, or a faint bright top band."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 120, (n, 24, 24, 3))
    for c in range(3):
        x[y == c, 8:16, 8:16, c] += 30
    x[y == 3, :6] += 30
    return x.astype(np.uint8), y


if __name__ == "__main__":
    x_train, y_train = synthetic(3000, 0)
    x_test, y_test = synthetic(500, 1)
    data = from_arrays(x_train, y_train, x_test, y_test, class_names=["red", "green", "blue", "top"], name="squares")
    cfg = tidal.preset("quick", methods=("tidal-entropy", "random"), seeds=(0,),
                       al={"initial": 100, "budget": 100, "cycles": 3, "subset": 2000},
                       train={"epochs": 15, "batch_size": 64})
    tidal.run_experiment(cfg, "runs/your-arrays", dataset=data, model=small_cnn)
    print(tidal.write_report("runs/your-arrays"))
