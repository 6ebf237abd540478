"""Composition root: builds the real adapters lazily, once per process, and lets tests override them.

Nothing here runs at import time. The first invocation that needs an adapter builds it and later
(warm) invocations reuse it, so HTTP connection pools and token caches live as long as the worker.
"""

from __future__ import annotations

from typing import Any

from shared.settings import Settings, get_settings


class Container:
    """Holds the app's adapters and services. Built lazily; `override` swaps in fakes for tests."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self._settings = settings
        self._instances: dict[str, Any] = dict(overrides)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    def override(self, **instances: Any) -> None:
        self._instances.update(instances)

    async def aclose(self) -> None:
        """Close every adapter that holds connections (used by the local host and tests)."""
        for instance in list(self._instances.values()):
            close = getattr(instance, "aclose", None) or getattr(instance, "close", None)
            if close is not None:
                result = close()
                if hasattr(result, "__await__"):
                    await result
        self._instances.clear()


_container: Container | None = None


def get_container() -> Container:
    global _container
    if _container is None:
        _container = Container()
    return _container


def set_container(container: Container | None) -> None:
    """Replace the process-wide container (tests, local host restarts)."""
    global _container
    _container = container
