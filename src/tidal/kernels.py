"""Sound CPU kernels: strided 1x1 convolutions never reach the oneDNN kernel that corrupts memory.

torch 2.13.0+cpu's oneDNN computes the weights' gradient of a 1x1 convolution with a stride > 1
(the ResNets' shortcut projections) through its "reduce to unit stride" path
(``jit_avx2_1x1_convolution_bwd_weights_t``, ``jit_avx512_core_1x1_convolution_bwd_weights_t``),
which writes outside its buffers for ordinary shapes: on an AVX2 CPU for small channel counts
with any batch and thread count, on an AVX-512 CPU for odd batches with 2 threads. The process
aborts (``free(): invalid next size``), hangs in a libgomp barrier, or goes on with corrupted
memory. ``benchmarks/onednn_sweep.py`` maps the boundary (``benchmarks/results/onednn_sweep.md``).

The fix does what that path does, one level up: when the input's height and width are multiples
of the stride, a 1x1 convolution with stride ``s`` and no padding equals the same convolution
with stride 1 on ``x[..., ::s, ::s]``. oneDNN then runs its unit-stride 1x1 kernels on the
picked pixels, the same kernels its own reduction would run on its own copy of them: the
output and both gradients are bit-identical to the unguarded call (measured for the built-in
ResNets' shapes in ``tests/test_kernels.py``), so every stored result stands. Other sizes
(e.g. 7x7 -> 4x4) never take that path: oneDNN runs its generic kernel, which the sweep found
sound, and the call is left alone.

:class:`ConvGuard` applies it around a training step: a :class:`torch.overrides.TorchFunctionMode`
sees every ``conv2d`` call, from an ``nn.Conv2d`` or a user's functional code, and rewrites the
strided 1x1 ones (:func:`strided_1x1`). A model whose first step makes no such call (an MLP, a
CNN without strided 1x1 convolutions) runs its later steps without the mode, at no cost; so does
any model on a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["ConvGuard", "strided_1x1"]

_NAMES = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_DEFAULTS = (None, None, None, 1, 0, 1, 1)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def strided_1x1(x: torch.Tensor, weight: torch.Tensor, stride, padding) -> tuple[int, int] | None:
    """The stride ``(sh, sw)`` of a CPU ``conv2d`` that :class:`ConvGuard` rewrites, else None.

    Args:
        x: the input ``[N, C_in, H, W]``.
        weight: ``[C_out, C_in / groups, 1, 1]`` for a rewrite.
        stride, padding: as ``F.conv2d`` takes them (an int, a pair, or ``"valid"``).
    Rewritten: a CPU tensor, a 1x1 kernel, a stride above 1, no padding, and ``H % sh == W % sw == 0``.
    """
    if not (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor)) or x.device.type != "cpu":
        return None
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[-1] != 1 or weight.shape[-2] != 1:
        return None
    if padding != "valid" and (isinstance(padding, str) or _pair(padding) != (0, 0)):
        return None
    sh, sw = _pair(stride)
    if max(sh, sw) <= 1 or x.shape[-2] % sh or x.shape[-1] % sw:
        return None
    return sh, sw


class _StridedConvMode(TorchFunctionMode):
    """Rewrites each strided 1x1 ``conv2d`` (:func:`strided_1x1`) as a unit-stride one on the
    picked pixels (kept in the input's memory format); counts them in ``hits``. Every other call
    passes through unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv2d and len(args) >= 2:
            given = list(args) + [kwargs.get(n, d) for n, d in zip(_NAMES[len(args):], _DEFAULTS[len(args):])]
            x, weight, bias, stride, padding, dilation, groups = given
            s = strided_1x1(x, weight, stride, padding)
            if s is not None:
                self.hits += 1
                fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
                picked = x[:, :, ::s[0], ::s[1]].contiguous(memory_format=fmt)
                return func(picked, weight, bias, 1, 0, dilation, groups)
        return func(*args, **kwargs)


class ConvGuard:
    """Keeps one run's training steps off oneDNN's corrupting kernel (module docstring).

    ``with guard.step():`` around a step's forward and backward passes. On a CPU the first step
    runs under the rewriting mode; if it made no strided 1x1 call, the model has none (the rule
    depends on the kernel, stride, padding and image size, not on the batch) and later steps run
    without the mode. On a GPU it does nothing.
    """

    def __init__(self, device: torch.device) -> None:
        self.active = torch.device(device).type == "cpu"
        self.probed = False
        self.hits = 0  # strided 1x1 calls rewritten so far

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        if not self.active:
            yield
            return
        mode = _StridedConvMode()
        with mode:
            yield
        self.hits += mode.hits
        if not self.probed:
            self.probed = True
            self.active = mode.hits > 0
