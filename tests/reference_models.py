"""Hand-written references, following the text (d2l, layers and blocks) line by line.

The YAML zoo in ``conf/model/`` must be a drop-in for each of these: same
parameter names and shapes, same outputs for the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(20, 256)
        self.out = nn.Linear(256, 10)

    def forward(self, X):
        return self.out(F.relu(self.hidden(X)))


class FixedHiddenMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rand_weight = torch.rand((20, 20), requires_grad=False)
        self.linear = nn.Linear(20, 20)

    def forward(self, X):
        X = self.linear(X)
        X = F.relu(torch.mm(X, self.rand_weight) + 1)
        X = self.linear(X)
        while X.abs().sum() > 1:
            X /= 2
        return X.sum()


class NestMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.linear = nn.Linear(32, 16)

    def forward(self, X):
        return self.linear(self.net(X))


def chimera() -> nn.Module:
    return nn.Sequential(NestMLP(), nn.Linear(16, 20), FixedHiddenMLP())


def param_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def block1() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU())


def block2() -> nn.Module:
    net = nn.Sequential()
    for i in range(4):
        net.add_module(f"block {i}", block1())
    return net


def rgnet() -> nn.Module:
    return nn.Sequential(block2(), nn.Linear(4, 1))


def shared() -> nn.Module:
    shared_layer = nn.Linear(8, 8)
    return nn.Sequential(
        nn.Linear(4, 8),
        nn.ReLU(),
        shared_layer,
        nn.ReLU(),
        shared_layer,
        nn.ReLU(),
        nn.Linear(8, 1),
    )


class CenteredLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, X):
        return X - X.mean()


def centered() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 128), CenteredLayer())


class SaveMLP(nn.Module):
    """The file-I/O section's MLP (named MLP in the text)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(20, 256)
        self.output = nn.Linear(256, 10)

    def forward(self, x):
        return self.output(F.relu(self.hidden(x)))


SaveMLP.__name__ = SaveMLP.__qualname__ = "MLP"  # printed as MLP(...), as in the text

# zoo name -> (factory, input shape, printed like the reference?)
REFERENCES = {
    "mlp": (mlp, (2, 20)),
    "mlp_block": (MLP, (2, 20)),
    "fixed_hidden_mlp": (FixedHiddenMLP, (2, 20)),
    "nest_mlp": (NestMLP, (2, 20)),
    "chimera": (chimera, (2, 20)),
    "param_net": (param_net, (2, 4)),
    "rgnet": (rgnet, (2, 4)),
    "shared": (shared, (2, 4)),
    "centered": (centered, (4, 8)),
    "save_mlp": (SaveMLP, (2, 20)),
}

# The text's own printout of rgnet, copied verbatim from the reference chapter.
RGNET_PRINTED = """Sequential(
  (0): Sequential(
    (block 0): Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=4, bias=True)
      (3): ReLU()
    )
    (block 1): Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=4, bias=True)
      (3): ReLU()
    )
    (block 2): Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=4, bias=True)
      (3): ReLU()
    )
    (block 3): Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=4, bias=True)
      (3): ReLU()
    )
  )
  (1): Linear(in_features=4, out_features=1, bias=True)
)"""
