"""A name -> class registry, shared by transforms (``create``) and generator checkpoints (``kind``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

_C = TypeVar("_C", bound=type)


class Registry(Generic[_C]):
    """Classes registered under names; each registered class gets its name as ``cls.<attribute>``.

    Args:
        what: what the names denote, for error messages (e.g. ``"transform"``).
        attribute: class attribute that receives the registered name.
    """

    def __init__(self, what: str, attribute: str) -> None:
        self.what = what
        self.attribute = attribute
        self._classes: dict[str, _C] = {}

    def register(self, name: str) -> Callable[[_C], _C]:
        """Class decorator registering the class under ``name``."""

        def decorator(cls: _C) -> _C:
            known = self._classes.get(name)
            if known is not None and known is not cls:
                raise ValueError(f"name: a {self.what} is already registered as {name!r} ({known.__name__})")
            self._classes[name] = cls
            setattr(cls, self.attribute, name)
            return cls

        return decorator

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str, argument: str = "name") -> _C:
        """The class registered as ``name``; a ``ValueError`` naming ``argument`` and the valid names."""
        if name not in self._classes:
            raise ValueError(f"{argument}: expected a {self.what} name, one of {self.names()}, got {name!r}")
        return self._classes[name]
