"""The classifier guard: run a live classifier inside a latent attack and leave it as it was found."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the module inside DDP / DataParallel / ``torch.compile`` wrappers (accelerate uses DDP).

    The inner steps of an attack must not go through DDP: its forward would register gradient hooks and
    expect a matching backward over the parameters, which an attack never does.
    """
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


@contextmanager
def classifier_guard(model: nn.Module, keep_mode: bool = False) -> Iterator[nn.Module]:
    """Yield the unwrapped ``model`` set up for attack steps, and restore it on exit.

    Inside: every submodule in eval mode (unless ``keep_mode``), every parameter with
    ``requires_grad=False``, so gradients flow to the latent only and no ``.grad`` is touched.
    On exit, also after an exception: each submodule's training flag, each parameter's
    ``requires_grad`` and, when ``keep_mode`` lets BatchNorm update its statistics, every buffer are
    exactly as before. The autocast state is whatever the caller set; the guard does not change it.

    Args:
        model: the classifier, possibly wrapped in DDP / DataParallel / ``torch.compile``.
        keep_mode: run the inner steps in the model's current mode instead of eval mode.
    """
    inner = unwrap_model(model)
    modes = [(module, module.training) for module in inner.modules()]
    flags = [(param, param.requires_grad) for param in inner.parameters()]
    # In eval mode no buffer changes; in train mode BatchNorm updates running stats, so snapshot them.
    saved_buffers = (
        [(buf, buf.detach().clone()) for buf in inner.buffers()] if keep_mode and inner.training else []
    )
    try:
        if not keep_mode:
            inner.eval()
        for param, _ in flags:
            param.requires_grad_(False)
        yield inner
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)
        with torch.no_grad():
            for buf, saved in saved_buffers:
                buf.copy_(saved)
