"""Inference-only rewrites of a trained network: the same outputs from fewer passes over memory.

MONAI's ``ResidualUnit`` with a stride runs two convolutions of the same input with the same
kernel, stride and padding: the first of its ``conv`` stack and its ``residual``. At the
shipped widths (1..32 input channels) these are bound by reading the input, not by
arithmetic, so :class:`FusedResidualUnit` runs them as one convolution with both filter banks
and splits the result: each output channel is computed exactly as before (the tiles' outputs
are equal to the bit on the shipped model), in about 17 % less CPU time per tile
(``benchmarks/bench_inference.py``). The rewritten copy is for inference only: its weights are
copied, so train the original.

:func:`resolve_precision` says in which precision the passes run: bfloat16 (autocast) on a CPU
that computes it natively (AVX512-BF16 or AMX: ~2.7x less CPU per tile; quality moves by
< 0.02 points, probabilities by < 0.003 on the real scans), float32 elsewhere, where bfloat16
would be emulated and slower. ``MIQA_PRECISION`` (``auto``, ``float32``, ``bfloat16``) overrides.
In a bfloat16 run the input convolution (one channel in) stays in float32
(:class:`Float32Convolution`): oneDNN's bfloat16 kernels for one input channel take about twice
the float32 time, and that convolution reads the largest tensor of the pass.
"""

from __future__ import annotations

import copy
import os
from functools import cache

import torch
from torch import nn


def _first_conv(unit: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(the first convolution of a ResidualUnit's stack, what follows it in that Convolution
    block), or None when the unit is not of that shape."""
    stack = getattr(unit, 'conv', None)
    if not isinstance(stack, nn.Sequential) or len(stack) == 0:
        return None
    block = stack[0]
    if not isinstance(block, nn.Sequential) or len(block) == 0:
        return None
    children = list(block.children())
    conv = children[0]
    if not isinstance(conv, nn.Conv3d):
        return None
    return conv, nn.Sequential(*children[1:])


def fusable(unit: nn.Module) -> bool:
    """Whether a ResidualUnit's residual convolution reads its input as its first one does
    (same input channels, kernel, stride, padding, dilation, groups; both with a bias or
    neither), so that :class:`FusedResidualUnit` can run both as one."""
    residual = getattr(unit, 'residual', None)
    found = _first_conv(unit)
    if found is None or not isinstance(residual, nn.Conv3d):
        return False
    first = found[0]
    same = ('in_channels', 'kernel_size', 'stride', 'padding', 'dilation', 'groups',
            'padding_mode')
    return (all(getattr(first, a) == getattr(residual, a) for a in same)
            and (first.bias is None) == (residual.bias is None))


class FusedResidualUnit(nn.Module):
    """A MONAI ``ResidualUnit`` whose first and residual convolutions run as one.

    ``forward(x) = rest(after(conv_a(x))) + conv_r(x)``, as the unit computes it, with
    ``conv_a`` and ``conv_r`` stacked into one convolution of both filter banks.

    Args:
        unit: a ResidualUnit for which :func:`fusable` holds (its weights are copied).
    """

    def __init__(self, unit: nn.Module):
        super().__init__()
        if not fusable(unit):
            raise ValueError('the residual unit has no residual convolution like its first one')
        first, after = _first_conv(unit)  # type: ignore[misc]
        residual = unit.residual
        self.split = int(first.out_channels)
        self.conv = nn.Conv3d(first.in_channels, first.out_channels + residual.out_channels,
                              first.kernel_size, first.stride, first.padding, first.dilation,
                              first.groups, first.bias is not None, first.padding_mode,
                              device=first.weight.device, dtype=first.weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([first.weight, residual.weight]))
            if first.bias is not None:
                self.conv.bias.copy_(torch.cat([first.bias, residual.bias]))
        self.after = copy.deepcopy(after)
        self.rest = copy.deepcopy(nn.Sequential(*list(unit.conv.children())[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.conv(x)
        return self.rest(self.after(both[:, :self.split])) + both[:, self.split:]


class Float32Convolution(nn.Module):
    """A convolution computed in float32 under bfloat16 autocast, its result in bfloat16 as the
    layers after it expect.

    Args:
        conv: the convolution (or a module holding it) to run in float32.
    """

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return self.conv(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.conv(x.float()).to(torch.get_autocast_dtype(x.device.type))


def _keep_input_convolution_float32(network: nn.Module) -> None:
    """Wrap the first convolution that reads one channel (the network's input) and every other
    convolution of that input in :class:`Float32Convolution`, in place."""
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv3d) and child.in_channels == 1:
                setattr(module, name, Float32Convolution(child))


def for_inference(network: nn.Module, precision: str = 'float32') -> nn.Module:
    """A copy of ``network`` in eval mode with every fusable residual unit fused (the
    original is untouched); the same outputs, fewer passes over each unit's input.
    ``precision`` ``bfloat16``: the one-channel input convolution is kept in float32."""
    fast = copy.deepcopy(network).eval()
    for module in list(fast.modules()):
        for name, child in list(module.named_children()):
            if fusable(child):
                setattr(module, name, FusedResidualUnit(child).eval())
    if precision == 'bfloat16':
        _keep_input_convolution_float32(fast)
    return fast


#: The precisions a worker may run its network passes in (``MIQA_PRECISION``).
PRECISIONS = ('auto', 'float32', 'bfloat16')


@cache
def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (the ``avx512_bf16`` or ``amx_bf16`` flag of
    /proc/cpuinfo), so that oneDNN's bfloat16 convolutions are faster than float32 ones."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as info:
            for line in info:
                if line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    return bool(flags & {'avx512_bf16', 'amx_bf16'})
    except OSError:
        pass
    return False


def resolve_precision(requested: str | None, device: torch.device | str) -> str:
    """``float32`` or ``bfloat16``: ``requested`` (default ``MIQA_PRECISION``, else ``auto``);
    ``auto`` is bfloat16 on a CPU with :func:`native_bfloat16`, float32 otherwise (CUDA
    included: its float32 passes are fast enough and keep the recorded figures exact).

    Raises ValueError naming the allowed values for anything else.
    """
    choice = (requested or os.environ.get('MIQA_PRECISION', '') or 'auto').strip().lower()
    if choice not in PRECISIONS:
        raise ValueError(f'precision {choice!r} is not one of {", ".join(PRECISIONS)} '
                         '(MIQA_PRECISION)')
    if choice != 'auto':
        return choice
    kind = torch.device(device).type
    return 'bfloat16' if kind == 'cpu' and native_bfloat16() else 'float32'
