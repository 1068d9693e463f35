"""Turning ``--semaug*`` flags into a semantic transform, with every check done before training starts."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from torch_semaug.data.latent_cache import LatentCache
from torch_semaug.generators import EncoderMissingError, LatentGenerator, load_generator
from torch_semaug.generators.io import read_metadata
from torch_semaug.train.args import TrainConfig, parse_kwargs
from torch_semaug.transforms import SemanticTransform, get_transform_class, list_transforms

# --semaug-<flag> -> constructor argument
FLAG_TO_KWARG = {"semaug_p": "p", "semaug_eps": "eps", "semaug_steps": "steps", "semaug_step_size": "step_size",
                 "semaug_mode": "mode", "semaug_restarts": "restarts"}


def check_transform_name(name: str, argument: str = "semaug") -> type[SemanticTransform]:
    """The transform class registered as ``name``; a ``ValueError`` listing the valid names otherwise."""
    if name not in list_transforms():
        raise ValueError(f"{argument}: unknown transform {name!r}; valid names: {', '.join(list_transforms())}")
    return get_transform_class(name)


def accepted_kwargs(cls: type) -> tuple[set[str], bool]:
    """Keyword names ``cls(...)`` accepts besides ``generator``, and whether it takes ``**kwargs``."""
    params = list(inspect.signature(cls).parameters.values())
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"generator"}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def check_kwargs(cls: type, kwargs: dict[str, Any], argument: str) -> None:
    """Raise ``ValueError`` naming the arguments ``cls`` does not take."""
    names, var_kw = accepted_kwargs(cls)
    unknown = sorted(set(kwargs) - names)
    if unknown and not var_kw:
        raise ValueError(
            f"{argument}: {cls.__name__} takes no argument(s) {unknown}; it accepts "
            f"{sorted(names - {'model', 'rng', 'to_generator', 'from_generator'})}"
        )


def flag_kwargs(config: TrainConfig) -> dict[str, Any]:
    """Constructor arguments from ``--semaug-p/-eps/-steps/...`` (only those given) and ``--semaug-kwargs``."""
    kwargs = {kwarg: getattr(config, flag) for flag, kwarg in FLAG_TO_KWARG.items()
              if getattr(config, flag) is not None}
    return kwargs | parse_kwargs(config.semaug_kwargs or [])


def required_kinds(name: str, cls: type) -> tuple[str, ...] | None:
    """The generator kinds transform ``name`` works with (its class's ``generator_kinds``; ``None``: any)."""
    return getattr(cls, "generator_kinds", None)


def load_checked_generator(name: str, cls: type, path: str | None, argument: str = "semaug_generator",
                           device: str | torch.device = "cpu") -> LatentGenerator:
    """Load the generator file for transform ``name``, refusing a kind the transform cannot use."""
    if path is None:
        raise ValueError(f"{argument}: --semaug {name} needs a generator checkpoint (--semaug-generator PATH)")
    kind = read_metadata(path).get("kind")
    kinds = required_kinds(name, cls)
    if kinds is not None and kind not in kinds:
        raise ValueError(f"{argument}: {name} needs a generator of kind {' or '.join(kinds)}, got a {kind!r} "
                         f"checkpoint at {path!r}")
    return load_generator(path, device=device)


def check_can_encode(generator: LatentGenerator, argument: str) -> None:
    """Raise before training if batches would need encoding but the generator has no encoder."""
    low, high = generator.image_range
    probe = torch.full((1, *generator.image_shape), (low + high) / 2, device=generator.device, dtype=generator.dtype)
    try:
        with torch.no_grad():
            generator.encode(probe)
    except EncoderMissingError as error:
        raise ValueError(
            f"{argument}: {type(generator).__name__} cannot encode images ({error}); build a latent cache with "
            "`semaug encode` and pass it with --semaug-latents"
        ) from None


def build_transform(name: str, generator: LatentGenerator, kwargs: dict[str, Any], *,
                    mean: Sequence[float] | None, std: Sequence[float] | None, rng: torch.Generator | None,
                    argument: str = "semaug_kwargs") -> SemanticTransform:
    """``create(name, ...)`` with the classifier's normalisation and the run's random stream."""
    cls = check_transform_name(name)
    check_kwargs(cls, kwargs, argument)
    names, var_kw = accepted_kwargs(cls)
    extras = {"mean": list(mean) if mean is not None else None, "std": list(std) if std is not None else None,
              "rng": rng}
    extras = {k: v for k, v in extras.items() if (k in names or var_kw) and k not in kwargs}
    try:
        return cls(generator=generator, **extras, **kwargs)
    except TypeError as error:
        raise ValueError(f"{argument}: cannot build {name} from {kwargs} ({error})") from None


def setup_semaug(config: TrainConfig, mean: Sequence[float], std: Sequence[float],
                 rng: torch.Generator | None) -> tuple[SemanticTransform | None, LatentCache | None]:
    """Validate every ``semaug*`` option of a training run and build the transform (generator on CPU; move it
    later).

    Returns:
        The transform (``None`` without ``--semaug``) and the opened latent cache (or ``None``).
    """
    if config.semaug is None:
        stray = [f"--{flag.replace('_', '-')}" for flag in ("semaug_generator", "semaug_latents", *FLAG_TO_KWARG)
                 if getattr(config, flag) is not None]
        if stray or config.semaug_kwargs:
            raise ValueError(f"semaug: {', '.join(stray) or '--semaug-kwargs'} given without --semaug NAME")
        return None, None
    cls = check_transform_name(config.semaug)
    kwargs = flag_kwargs(config)
    check_kwargs(cls, kwargs, "semaug flags")
    generator = load_checked_generator(config.semaug, cls, config.semaug_generator)
    cache = None
    if config.semaug_latents is not None:
        cache = LatentCache.open(config.semaug_latents)
        cache.check_generator(generator, "semaug_latents")
    else:
        check_can_encode(generator, "semaug_latents")
    transform = build_transform(config.semaug, generator, kwargs, mean=mean, std=std, rng=rng)
    return transform, cache
