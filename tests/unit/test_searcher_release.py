"""A copy the registry lets go is freed at once: no searcher thread keeps it in a local variable
(``release_memory`` right after the drop can then hand its memory back)."""

from __future__ import annotations

import types
import weakref

from searcher.service import SearcherService


class _Copy:
    info = types.SimpleNamespace(name="c")

    def fill_interim(self) -> bool:
        return False


def test_interim_round_keeps_no_copy() -> None:
    held = [_Copy()]
    svc = SearcherService.__new__(SearcherService)
    svc.registry = types.SimpleNamespace(loaded=lambda: list(held))
    gone = weakref.ref(held[0])
    assert svc._fill_interim_once() is False
    held.clear()  # the registry drops its copy
    assert gone() is None
