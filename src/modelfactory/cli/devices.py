"""``modelfactory devices``: the devices this process can use, and which one ``device=auto`` picks."""

from __future__ import annotations

import argparse

from ..devices import available_devices, try_gpu

__all__ = ["setup", "run"]


def setup(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    import torch

    current = try_gpu()
    for name in available_devices():
        if name.startswith("cuda"):
            index = int(name.split(":")[1])
            props = torch.cuda.get_device_properties(index)
            detail = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
        elif name == "mps":
            detail = "Apple Metal"
        else:
            detail = "host CPU"
        marker = "  (current: device=auto picks this)" if str(current) == name else ""
        print(f"{name:8s} {detail}{marker}")
    return 0
