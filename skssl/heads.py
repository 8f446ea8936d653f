"""Projection and prediction heads shared by the methods (after lightly's heads)."""

from torch import nn


def mlp(in_dim, hidden_dim, out_dim, n_layers=2, last_bn=False):
    """Linear-BN-ReLU blocks ending in a linear layer (SimCLR/MoCo v2/BYOL heads).

    ``last_bn`` adds an affine-free BatchNorm on the output, as SimCLR v2 and
    SimSiam's projector do.
    """
    layers, dim = [], in_dim
    for _ in range(n_layers - 1):
        layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)
