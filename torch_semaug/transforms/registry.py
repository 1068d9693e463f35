"""A name -> transform-class registry, timm style: ``create(name, generator=g, **kwargs)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch_semaug.transforms.base import SemanticTransform

_REGISTRY: dict[str, type[SemanticTransform]] = {}
_T = TypeVar("_T", bound=type[SemanticTransform])


def register_transform(name: str) -> Callable[[_T], _T]:
    """Class decorator that makes a transform available to :func:`create` under ``name``."""

    def decorator(cls: _T) -> _T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"name: a transform is already registered as {name!r} ({_REGISTRY[name].__name__})")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return decorator


def list_transforms() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return sorted(_REGISTRY)


def get_transform_class(name: str) -> type[SemanticTransform]:
    """The class registered as ``name``; a ``ValueError`` listing the valid names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"name: expected one of {list_transforms()}, got {name!r}")
    return _REGISTRY[name]


def create(name: str, **kwargs: Any) -> SemanticTransform:
    """Build the transform registered as ``name``; keyword arguments go straight to its constructor.

    Example:
        >>> t = torch_semaug.create("adversarial_latent_attack", generator=g, eps=8 / 255,
        ...                         step_size=2 / 255, steps=7)
    """
    return get_transform_class(name)(**kwargs)
