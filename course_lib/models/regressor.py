"""The MAML paper's sinusoid regressor: a 1-40-40-1 ReLU network.

Derived in chapter 03, section 1 (the sinusoid tasks); the network every speed and scaling
measurement of chapters 03, 04 and 08 uses.
"""

from __future__ import annotations

from torch import nn

__all__ = ["mlp_regressor"]


def mlp_regressor(hidden: tuple[int, ...] = (40, 40), n_in: int = 1, n_out: int = 1) -> nn.Sequential:
    """An MLP ``n_in -> hidden... -> n_out`` with ReLU; the default is the paper's 1-40-40-1.

    Shapes: input ``[..., n_in]`` -> output ``[..., n_out]``.
    """
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must list at least one layer width >= 1, got {hidden}")
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, n_out))
