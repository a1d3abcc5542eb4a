"""A cache that keeps only what the app itself wrote: route templates, never visitors' paths.

Route checks are cached because an app has few templates and every request repeats one.
But the same functions also see what a visitor typed, when an app passes a raw path
(``generalize_path``, ``set_route(request, request.path)``) or a sender submits a refused
route: caching those would keep a path, or the identifier in it, in memory for as long as
the process runs. So a result is kept only when the input turned out to be clean template
text; anything that needed rewriting or was refused is worked out again each time.
The one exception is a key known to be the app's own text (a router's rule, a CMS page's
path), which ``remember`` keeps whatever its result: it is in the app's memory anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["CleanOnlyCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CleanOnlyCache(Generic[K, V]):
    """``compute(key)`` remembered for keys whose result ``is_clean(key, result)``
    accepts; at most ``maxsize`` of them, then emptied (templates are few: a full cache
    means something unusual is going on, and starting over is cheap).

    ``get`` is the remembered result or None, without computing: a dict's own ``get``,
    for a hot path that handles the miss itself."""

    __slots__ = ("_compute", "_is_clean", "_maxsize", "_results", "get")

    def __init__(
        self, compute: Callable[[K], V], is_clean: Callable[[K, V], bool], maxsize: int
    ) -> None:
        self._compute = compute
        self._is_clean = is_clean
        self._maxsize = maxsize
        self._results: dict[K, V] = {}
        self.get: Callable[[K], V | None] = self._results.get

    def __call__(self, key: K) -> V:
        try:
            return self._results[key]
        except KeyError:
            pass
        result = self._compute(key)
        if self._is_clean(key, result):
            self._keep(key, result)
        return result

    def remember(self, key: K) -> V:
        """``compute(key)``, kept even when it is not clean: for a key the app wrote
        itself, never one a visitor sent."""
        try:
            return self._results[key]
        except KeyError:
            pass
        result = self._compute(key)
        self._keep(key, result)
        return result

    def _keep(self, key: K, result: V) -> None:
        if len(self._results) >= self._maxsize:
            self._results.clear()
        self._results[key] = result

    def __contains__(self, key: object) -> bool:
        return key in self._results
