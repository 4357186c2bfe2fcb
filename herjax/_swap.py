"""A process-wide swap that lasts while a block traces, for the two places herjax changes what MJX calls:
``herjax.envs.mjx_contacts`` (MJX's collision table) and ``herjax._lapack`` (jax.scipy's Cholesky)."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, ContextManager, Iterator


def nested_swap(swap_in: Callable[[], Callable[[], None]]) -> Callable[[], ContextManager[None]]:
    """A context-manager factory: the outermost block calls ``swap_in()`` as it opens and the function that returned
    as it closes; blocks inside it change nothing. A block holds a lock, so another thread's block waits."""
    lock = threading.RLock()
    depth = [0]

    @contextlib.contextmanager
    def block() -> Iterator[None]:
        with lock:
            undo = swap_in() if depth[0] == 0 else None
            depth[0] += 1
            try:
                yield
            finally:
                depth[0] -= 1
                if undo is not None:
                    undo()

    return block
