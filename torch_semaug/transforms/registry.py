"""A name -> transform-class registry, timm style: ``create(name, generator=g, **kwargs)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch_semaug._registry import Registry
from torch_semaug.generators.base import LatentGenerator
from torch_semaug.transforms.base import SemanticTransform

_TRANSFORMS: Registry[type[SemanticTransform]] = Registry("transform", "registry_name")
_T = TypeVar("_T", bound=type[SemanticTransform])


def register_transform(name: str) -> Callable[[_T], _T]:
    """Class decorator that makes a transform available to :func:`create` under ``name``."""
    return _TRANSFORMS.register(name)


def list_transforms() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return _TRANSFORMS.names()


def get_transform_class(name: str) -> type[SemanticTransform]:
    """The class registered as ``name``; a ``ValueError`` listing the valid names otherwise."""
    return _TRANSFORMS.get(name)


def create(name: str, generator: LatentGenerator, **kwargs: Any) -> SemanticTransform:
    """Build the transform registered as ``name``; keyword arguments go straight to its constructor.

    Example:
        >>> t = torch_semaug.create("adversarial_latent_attack", generator=g, eps=8 / 255,
        ...                         step_size=2 / 255, steps=7)
    """
    return get_transform_class(name)(generator=generator, **kwargs)
