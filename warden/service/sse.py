"""Server-Sent Events for a turn: run the graph in a worker thread, forward answer tokens.

The graph's ``respond`` node writes the answer to the checkpoint only when the
model's stream has ended. When the customer's HTTP client disconnects, the
thread is marked cancelled and the next streamed token raises
``StreamCancelled`` inside the model call, so the node fails, nothing of the
answer is checkpointed, and the thread takes the next message as usual. A
reviewer's stream cancels nothing (see ``warden.service.app``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

logger = logging.getLogger(__name__)

TokenCallback = Callable[[str], None]


class StreamCancelled(Exception):
    """The client of a streamed turn disconnected; the turn stops without an answer."""


class CancelOnDisconnect(BaseCallbackHandler):
    """Chat model callback that stops a run's token stream once its thread is cancelled.

    LangGraph puts the ``thread_id`` into the metadata of every model run, which
    is how a token is tied to a thread.
    """

    raise_error = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled: set[str] = set()
        self._runs: dict[UUID, str] = {}

    def cancel(self, thread_id: str) -> None:
        with self._lock:
            self._cancelled.add(thread_id)

    def clear(self, thread_id: str) -> None:
        with self._lock:
            self._cancelled.discard(thread_id)

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, metadata: dict | None = None, **kwargs: Any) -> None:
        thread_id = (metadata or {}).get("thread_id")
        if thread_id:
            with self._lock:
                self._runs[run_id] = str(thread_id)

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            thread_id = self._runs.get(run_id)
            cancelled = thread_id is not None and thread_id in self._cancelled
        if cancelled:
            raise StreamCancelled(f"client of thread {thread_id!r} disconnected")

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._runs.pop(run_id, None)


class RunCancellation:
    """Cancellation of one streamed run's thread, which a finished run ignores.

    A client can disconnect after the run has finished but before it read the
    last event. Cancelling then would leave the thread marked cancelled, and its
    next run, a reviewer's decision for example, would stop at its first token.
    """

    def __init__(self, handler: CancelOnDisconnect, thread_id: str) -> None:
        self._handler = handler
        self._thread_id = thread_id
        self._lock = threading.Lock()
        self._finished = False

    def cancel(self) -> None:
        """Mark the thread cancelled, unless its run has finished."""
        with self._lock:
            if not self._finished:
                self._handler.cancel(self._thread_id)

    def finish(self) -> None:
        """Record that the run has ended and clear any cancellation of its thread."""
        with self._lock:
            self._finished = True
            self._handler.clear(self._thread_id)


def attach_cancel_handler(chat_model: Any) -> CancelOnDisconnect:
    """Add (once) a ``CancelOnDisconnect`` to ``chat_model``'s callbacks and return it."""
    callbacks = list(chat_model.callbacks or [])
    for handler in callbacks:
        if isinstance(handler, CancelOnDisconnect):
            return handler
    handler = CancelOnDisconnect()
    chat_model.callbacks = [*callbacks, handler]
    return handler


async def run_streamed(
    executor: Executor,
    run: Callable[[TokenCallback], Any],
    *,
    on_cancel: Callable[[], None],
    on_finish: Callable[[], None],
) -> AsyncIterator[tuple[str, Any]]:
    """Yield ``("token", text)`` items, then ``("outcome", value)`` or ``("error", exception)``.

    ``run`` executes in ``executor`` with a token callback. If the consumer
    stops early (a disconnect cancels the generator), ``on_cancel`` is called,
    and the run goes on unless ``on_cancel`` stops it. ``on_finish`` runs in
    the worker once ``run`` has returned or raised, whether or not anyone is
    still listening.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:
            # The event loop is closed because the server is stopping, so no client reads this.
            logger.debug("event loop closed before a stream item was delivered")

    def work() -> None:
        try:
            put(("outcome", run(lambda text: put(("token", text)))))
        except Exception as error:  # noqa: BLE001 - handed to the consumer, which reports it
            put(("error", error))
        finally:
            on_finish()

    loop.run_in_executor(executor, work)
    finished = False
    try:
        while True:
            kind, value = await queue.get()
            if kind != "token":
                finished = True
            yield kind, value
            if finished:
                return
    finally:
        if not finished:
            on_cancel()
