"""Small asyncio helpers shared by the long-running parts of the engine."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it is done.

    Insists: Python 3.11's ``asyncio.wait_for`` can swallow a cancellation that
    races the completion of the future it waits for (fixed in 3.12), so a single
    ``cancel()`` may leave a supervisor loop running and a plain ``await`` hangs."""
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
