"""Built-in init schemes: every ``torch.nn.init`` scheme by its name without ``_``, and the text's ``my_init``."""

from __future__ import annotations

import torch
from torch import nn

from .table import register_init

__all__ = ["my_init", "TORCH_SCHEMES"]

# torch.nn.init schemes, registered under their names without the trailing underscore.
TORCH_SCHEMES = (
    "uniform_", "normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "trunc_normal_", "orthogonal_", "sparse_",
)  # fmt: skip

for _attr in TORCH_SCHEMES:
    # torch's schemes take the tensor first and their options positionally too
    register_init(getattr(nn.init, _attr), name=_attr.rstrip("_"), skip_leading=1)


@register_init("my_init")
def my_init(
    tensor: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    low: float = -10.0,
    high: float = 10.0,
    threshold: float = 5.0,
) -> torch.Tensor:
    """The text's custom scheme: U(low, high), then zero every weight with ``|w| < threshold``."""
    nn.init.uniform_(tensor, low, high, generator=generator)
    with torch.no_grad():
        tensor.mul_(tensor.abs() >= threshold)
    return tensor
