"""The LM-call budget shared by every worker of a run: a call is reserved before it is made.

A budget checked from a snapshot lets every worker spend it once: eight workers that each saw 190
of 200 calls spent make eighty more. Here each request that misses DSPy's cache first takes one
call from the gate; the gate takes calls from the run's counter in the store in small blocks (one
atomic update per block), so all workers together never reserve more than the budget, and the
calls made past it are at most those already reserved and not yet made (a block per worker). A
request DSPy's cache answers gives its call back. When the store grants nothing the request is
refused with ``BudgetRefusal``: its example is left unscored, never scored 0.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class CallGate:
    """Calls reserved from a shared counter; thread-safe.

    ``reserve(n)`` asks the store for up to ``n`` calls and returns how many it granted;
    ``release(n)`` returns unused ones. ``close()`` gives the unused allowance back.
    """

    def __init__(self, reserve: Callable[[int], int], release: Callable[[int], None], *, block: int,
                 limit: int) -> None:
        self._reserve, self._release = reserve, release
        self.block = max(1, block)
        self.limit = limit
        self._allowance = 0
        self._lock = threading.Lock()
        self.used_up = False
        """The store granted nothing when asked: the budget is spent (or reserved by others)."""

    def acquire(self) -> bool:
        with self._lock:
            if self._allowance == 0:
                granted = self._reserve(self.block)
                self._allowance += granted
                self.used_up = granted == 0
            if self._allowance == 0:
                return False
            self._allowance -= 1
            return True

    def refund(self, count: int = 1) -> None:
        """A reserved call that was not made (DSPy's cache answered it)."""
        with self._lock:
            self._allowance += count

    def exhausted(self) -> bool:
        """True when no call is left here and the store grants none (asks the store only then)."""
        with self._lock:
            if self._allowance:
                return False
            granted = self._reserve(self.block)
            self._allowance += granted
            self.used_up = granted == 0
            return self.used_up

    def close(self) -> None:
        with self._lock:
            left, self._allowance = self._allowance, 0
        if left:
            self._release(left)
