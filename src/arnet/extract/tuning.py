"""Keeping extraction at the machine's speed: overlap, thread counts, allocator, stage times.

- `prefetch` runs decoding and resizing in a background thread, a bounded number of frames
  ahead, so the network never waits for the decoder (the decoders release the GIL).
- `limit_allocator_churn` stops glibc from handing every large activation buffer back to the
  kernel after each forward pass: by default a buffer over 32 MiB is mmap-ed and unmapped
  each time, and touching fresh pages costs a page fault each, which showed as system time
  exceeding user time in profiles of the PyTorch path.
- `StageTimes` adds up where the seconds go (decode, resize, network, pooling, writing);
  `benchmarks/extract.py` prints it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_tuned = False


def limit_allocator_churn(mmap_threshold: int = 1 << 30) -> bool:
    """Keep large freed blocks in the process's heap instead of returning them to the kernel.

    Only glibc is affected (other C libraries: nothing happens). Idempotent. The environment
    variable ARNET_ALLOCATOR_TUNING=0 leaves the allocator as it is (to measure the difference).

    Returns:
        True when the setting was applied.
    """
    global _tuned
    if _tuned:
        return True
    if os.environ.get("ARNET_ALLOCATOR_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # glibc caps the mmap threshold (32 MiB on 64-bit builds that check it): try lower values.
    for threshold in (mmap_threshold, 32 << 20):
        if mallopt(_M_MMAP_THRESHOLD, threshold) == 1:
            mallopt(_M_TRIM_THRESHOLD, 2 * threshold)
            _tuned = True
            return True
    return False


def limit_library_threads() -> None:
    """One thread for OpenCV's own pool: its resizes of a few hundred pixels gain nothing from
    more, and its worker threads would compete with the network's."""
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(1)


class StageTimes:
    """Seconds spent per stage, summed over calls (each stage is timed in one thread)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.frames = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def timed(self, items: Iterable[T], name: str) -> Iterator[T]:
        """Iterate `items`, adding the time spent producing each to stage `name`."""
        iterator = iter(items)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.add(name, time.perf_counter() - start)
                return
            self.add(name, time.perf_counter() - start)
            yield item

    def reset(self) -> None:
        self.seconds.clear()
        self.frames = 0


_DONE = object()


def prefetch(items: Iterable[T], depth: int = 64, name: str = "arnet-decode") -> Iterator[T]:
    """Produce `items` in a background thread, at most `depth` ahead of the consumer.

    An exception in the producer is raised in the consumer at the point it occurred in the
    stream; a consumer that stops early (an error, a closed generator) stops the producer.
    """
    if depth < 1:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer)
            put((_DONE, exc))
            return
        put((_DONE, None))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
