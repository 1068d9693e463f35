"""``semaug info``: versions, devices and threads, for bug reports and benchmark headers."""

from __future__ import annotations

import argparse
import platform


def environment() -> dict[str, str]:
    """Versions of the stack and what hardware torch sees."""
    import kornia
    import timm
    import torch
    import torchvision

    from torch_semaug import __version__

    info = {
        "torch-semaug": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "kornia": kornia.__version__,
        "timm": timm.__version__,
        "cpu threads": str(torch.get_num_threads()),
        "cuda available": str(torch.cuda.is_available()),
    }
    if torch.cuda.is_available():
        info["cuda devices"] = ", ".join(
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        )
    return info


def configure(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    for key, value in environment().items():
        print(f"{key:>15}: {value}")
    return 0
