"""The pieces of a classifier run that are checked before they are built: accelerator, timm model,
normalisation and the semantic transform."""

from __future__ import annotations

import difflib
import warnings
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from torch_semaug.train.args import TrainConfig
from torch_semaug.train.semaug_setup import FLAG_TO_KWARG, setup_semaug


def make_accelerator(config: TrainConfig) -> Any:
    """An ``Accelerator`` on the requested device; with no GPU it runs on CPU processes (gloo), which is what
    makes ``accelerate launch --multi_gpu --num_processes 2`` start two CPU processes."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    device = config.device
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested, but torch finds no CUDA device; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device: 'mps' requested, but this torch build has no MPS device; use --device cpu")
    no_accelerator = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    mixed = ("fp16" if config.amp_dtype == "float16" else "bf16") if config.amp else "no"
    # Trackers log in the run folder, known only once the accelerator runs; the parent folder stands in until then.
    project = ProjectConfiguration(project_dir=config.output, logging_dir=config.output)
    # A second run in the same process (a notebook, a test) may use another mixed precision; the process
    # group of a distributed launch (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    try:
        accelerator = Accelerator(cpu=device == "cpu" or (device is None and no_accelerator), mixed_precision=mixed,
                                  gradient_accumulation_steps=config.grad_accum_steps, log_with=config.log_with,
                                  project_config=project)
    except (ValueError, ImportError) as error:
        option = "log_with" if config.log_with is not None and "mixed" not in str(error) else "amp"
        raise ValueError(f"{option}: accelerate cannot run --amp {config.amp} --amp-dtype {config.amp_dtype} "
                         f"--log-with {config.log_with} here ({error})") from None
    if not accelerator.is_main_process:
        warnings.simplefilter("ignore")  # one copy of every warning: the main process's
    return accelerator


def build_model(config: TrainConfig, classes: list[str], data_chans: int) -> tuple[torch.nn.Module, int, int]:
    """``timm.create_model`` for the dataset's classes and channels; returns the model, classes and channels."""
    import timm

    if not timm.is_model(config.model):
        close = difflib.get_close_matches(config.model, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ValueError(f"model: expected a timm model name, got {config.model!r}{hint}")
    num_classes = config.num_classes or len(classes)
    if num_classes < len(classes) or num_classes < 2:
        raise ValueError(f"num_classes: the training split has {len(classes)} classes, so at least "
                         f"{max(2, len(classes))} are needed, got {num_classes}")
    if config.in_chans is not None and config.in_chans != data_chans:
        raise ValueError(f"in_chans: the images have {data_chans} channel(s), got {config.in_chans}")
    try:
        model = timm.create_model(config.model, num_classes=num_classes, in_chans=data_chans, drop_rate=config.drop)
    except (TypeError, ValueError, RuntimeError, AssertionError) as error:
        raise ValueError(f"model: timm cannot build {config.model!r} for {data_chans}-channel images "
                         f"({error})") from None
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, num_classes, data_chans


def random_erasing(config: TrainConfig, device: torch.device) -> Any:
    """timm's ``--reprob`` with train.py's ``--remode pixel``, applied to the batch on the device."""
    if config.reprob == 0 or config.no_aug:
        return None
    from timm.data.random_erasing import RandomErasing

    return RandomErasing(config.reprob, mode="pixel", device=str(device))

def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    try:
        return create_optimizer_v2(model, opt=config.opt, lr=config.lr, weight_decay=config.weight_decay,
                                   momentum=config.momentum)
    except ValueError as error:
        raise ValueError(f"opt: expected a timm optimizer name such as sgd, adamw or lamb, got {config.opt!r} "
                         f"({error})") from None

def make_scheduler(config: TrainConfig, optimizer: Any, updates_per_epoch: int) -> tuple[Any, int]:
    """timm's scheduler and the number of epochs it runs."""
    from timm.scheduler import create_scheduler_v2

    try:
        return create_scheduler_v2(
            optimizer, sched=config.sched, num_epochs=config.epochs, warmup_epochs=config.warmup_epochs,
            warmup_lr=config.warmup_lr, min_lr=config.min_lr,
            decay_epochs=config.decay_epochs or max(1, config.epochs // 3), decay_rate=config.decay_rate,
            updates_per_epoch=updates_per_epoch,
        )
    except ValueError as error:
        raise ValueError(f"sched: expected a timm scheduler name such as cosine, step or plateau, got "
                         f"{config.sched!r} ({error})") from None


def compile_model(model: torch.nn.Module, backend: str | None) -> torch.nn.Module:
    """timm's ``--torchcompile [BACKEND]``: ``torch.compile`` with a checked backend name."""
    if backend is None:
        return model
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        raise ValueError(f"torchcompile: expected a torch.compile backend such as inductor or eager, got {backend!r}")
    return torch.compile(model, backend=backend)


def normalisation(config: TrainConfig, model: torch.nn.Module, in_chans: int) -> tuple[tuple, tuple]:
    """``mean``/``std``, else timm's data config of the model, reduced to one value for 1-channel data."""
    from timm.data import resolve_model_data_config

    if config.mean is not None:
        mean, std = tuple(config.mean), tuple(config.std)
    else:
        data_config = resolve_model_data_config(model)
        mean, std = tuple(data_config["mean"]), tuple(data_config["std"])
        if in_chans != len(mean):
            mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(f"mean: expected {in_chans} values (one per channel), got {len(mean)} and {len(std)}")
    return mean, std


def build_semaug(config: TrainConfig, mean: tuple, std: tuple, rng: torch.Generator) -> tuple[Any, Any]:
    """The transform and latent cache of the ``semaug*`` options (``None, None`` without ``semaug``); an error
    about a transform argument (``mode: ...``) names the option that set it (``semaug_mode: ...``)."""
    if config.semaug_warm_start and config.semaug is None:
        raise ValueError("semaug_warm_start: given without --semaug NAME (an adversarial transform)")
    try:
        semaug, cache = setup_semaug(config, mean, std, rng)
        if config.semaug_warm_start and not semaug.needs_model:
            raise ValueError(f"semaug_warm_start: warm starts remember attacks; {type(semaug).__name__}"
                             f"(mode={semaug.mode!r}) attacks nothing (choose --semaug-mode adversarial)")
        return semaug, cache
    except ValueError as error:
        message = str(error)
        name = message.split(":", 1)[0]
        flags = {kwarg: flag for flag, kwarg in FLAG_TO_KWARG.items()}
        if config.semaug is not None and name in flags and getattr(config, flags[name]) is not None:
            message = flags[name] + message[len(name):]
        elif config.semaug is not None and name in config.semaug_kwargs:
            message = f"semaug_kwargs: {message}"
        raise ValueError(message) from None


def attach_warm_start(config: TrainConfig, semaug: Any, train: Dataset) -> None:
    """With ``--semaug-warm-start``, give the transform an :class:`AttackMemory` over the training split's
    dataset indices (those of the whole split when ``--train-subset`` takes part of it)."""
    if not config.semaug_warm_start:
        return
    from torch_semaug.attacks import AttackMemory

    split = train.dataset if isinstance(train, Subset) else train
    semaug.set_warm_start(AttackMemory(len(split)))
