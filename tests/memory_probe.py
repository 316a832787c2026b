"""A torch dispatch mode that records the largest tensor any operation returns: the memory tests
use it to show a strategy never allocates an [n, D] tensor (tests/ is on sys.path, see conftest)."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class LargestTensor(TorchDispatchMode):
    """Records, in ``largest``, the bytes of the largest tensor any torch operation returns (factories included)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out
