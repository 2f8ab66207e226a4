"""Epochs of the emulated API's calls: a reset fences out every call that began before it.

A call takes the current epoch when it arrives. A reset moves the epoch on, wakes the calls
held by a fault's delay (they end without an answer and leave no trace), and waits a bounded
time for the calls already inside the app to finish. A call of an earlier epoch is never
journalled. The fence is per process: it covers the fixtures, whose server runs in the test
process, not other processes sharing the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter

# How long a reset waits for calls of earlier epochs that are inside the app (a test mail
# to a slow SMTP server, say); they are left behind after that, and still never journalled.
FENCE_TIMEOUT = 5.0


class CallEpochs:
    """The current epoch, the calls in flight per epoch, and the delays that a fence cuts short."""

    def __init__(self) -> None:
        self.epoch = 0
        self._active: Counter[int] = Counter()
        self._changed = threading.Condition()
        self._fences = 0  # fences waiting: only they need a call's leaving notified
        self._sleepers: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}

    def enter(self) -> int:
        """Count a call in; its epoch."""
        with self._changed:
            self._active[self.epoch] += 1
            return self.epoch

    def leave(self, epoch: int) -> None:
        """Count a call of `epoch` out."""
        with self._changed:
            self._active[epoch] -= 1
            if self._active[epoch] <= 0:
                del self._active[epoch]
            if self._fences:
                self._changed.notify_all()

    def stale(self, epoch: int) -> bool:
        """Whether a reset came after the call of `epoch` began."""
        return epoch != self.epoch

    async def sleep(self, seconds: float, epoch: int) -> bool:
        """Wait `seconds`; false, at once, if a reset fences the call of `epoch` meanwhile."""
        woken = asyncio.Event()
        with self._changed:
            if self.stale(epoch):
                return False
            self._sleepers[woken] = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                await woken.wait()
        except TimeoutError:
            pass
        finally:
            with self._changed:
                self._sleepers.pop(woken, None)
        return not self.stale(epoch)

    def fence(self, timeout: float = FENCE_TIMEOUT) -> bool:
        """Start a new epoch; wait for the earlier calls to end. False if some did not in time.

        Never call it on an event loop that serves the calls: they could not end meanwhile.
        """
        with self._changed:
            self.epoch += 1
            current = self.epoch
            sleepers = list(self._sleepers.items())
        for event, loop in sleepers:
            # A closed loop raises RuntimeError: nothing is left to wake there.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        with self._changed:
            self._fences += 1
            try:
                return self._changed.wait_for(
                    lambda: all(epoch >= current for epoch in self._active), timeout
                )
            finally:
                self._fences -= 1
