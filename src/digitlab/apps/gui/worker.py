"""Background work for the Tk app: threads do the heavy lifting, Tk is touched only on its thread.

Tk is not thread-safe, so nothing that runs on a worker thread may hold a Tk object — not even
indirectly through a closure over the app: if a worker held the last reference, Tcl would be
torn down on the wrong thread (a hard crash). So:

* :meth:`TaskRunner.submit` runs a plain ``job()`` (which must not capture Tk objects) on one
  worker thread; the Tk thread polls the future with ``after`` and calls ``on_done(result)``
  or ``on_error(exc)`` itself. One worker means jobs run one at a time and in order: a
  prediction queued after a model load always sees the new model. A job submitted with a
  ``key`` replaces an older not-yet-started job with the same key, so a burst of drawing
  events costs one prediction, not one per mouse move.
* :meth:`TaskRunner.start_thread` runs a long job (training) on its own thread; it reports
  through ``post(message)`` (a queue), and the Tk thread hands each message to ``on_message``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import tkinter as tk
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# How often the Tk thread looks for results from workers: 25 ms is well under the ~100 ms at
# which a delay becomes noticeable, and costs nothing measurable when nothing is running.
POLL_MS = 25
# On close, how long to wait for a long-running thread (training) that was asked to stop: it
# stops after the current batch and saves last.pt, normally well under a second.
CLOSE_TIMEOUT_S = 30.0

Post = Callable[[Any], None]


def forget_widgets(owner: object) -> None:
    """Drop ``owner``'s attributes that refer to Tk widgets, after the window is destroyed.

    A composite widget that keeps its children as attributes forms a cycle with them (child
    ``.master`` -> owner -> child), which only the cyclic garbage collector can free — and it
    may run on any thread, where finalising Tk objects is not allowed. Breaking the cycles lets
    plain reference counting free everything on the Tk thread.
    """
    for name, value in list(vars(owner).items()):
        if name != "master" and isinstance(value, tk.Misc):
            delattr(owner, name)


@dataclass
class _Waiting:
    future: Future
    on_done: Callable[[Any], None]
    on_error: Callable[[BaseException], None]


@dataclass
class _Stream:
    thread: threading.Thread
    messages: queue.Queue
    on_message: Callable[[Any], None]


class TaskRunner:
    """Runs jobs on worker threads and delivers their results on the Tk thread."""

    def __init__(
        self, widget: tk.Misc, report_error: Callable[[BaseException], None] | None = None
    ) -> None:
        """Poll for results with ``widget.after``; ``report_error`` gets callbacks' exceptions."""
        self._widget = widget
        self._report_error = report_error
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digitlab-gui")
        self._waiting: list[_Waiting] = []
        self._keyed: dict[str, Future] = {}
        self._streams: list[_Stream] = []
        self._closed = False
        self._after_id: str | None = widget.after(POLL_MS, self._poll)

    def submit(
        self,
        job: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        *,
        key: str | None = None,
    ) -> None:
        """Run ``job()`` on the worker; ``on_done(result)`` or ``on_error(exc)`` then run on Tk.

        ``job`` must not reference Tk objects (see the module docstring). With ``key``, a
        not-yet-started job submitted earlier with the same key is dropped.
        """
        if self._closed:
            return
        if key is not None and key in self._keyed:
            self._keyed.pop(key).cancel()  # no-op when it already runs
        future = self._executor.submit(job)
        self._waiting.append(_Waiting(future, on_done, on_error))
        if key is not None:
            self._keyed[key] = future

    def start_thread(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...],
        on_message: Callable[[Any], None],
        name: str,
    ) -> threading.Thread:
        """Run ``target(post, *args)`` on a new daemon thread; ``post(msg)`` -> ``on_message(msg)``.

        ``target`` and ``args`` must not reference Tk objects; ``on_message`` runs on Tk's
        thread, in order, for every message posted.
        """
        messages: queue.Queue = queue.Queue()
        thread = threading.Thread(target=target, args=(messages.put, *args), name=name, daemon=True)
        self._streams.append(_Stream(thread, messages, on_message))
        thread.start()
        return thread

    @property
    def busy(self) -> bool:
        """True while a job or thread is unfinished or its results are not delivered yet."""
        return bool(self._waiting or self._streams)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop polling, drop queued jobs and wait (bounded) for running ones to end."""
        self._closed = True
        if self._after_id is not None:
            with contextlib.suppress(tk.TclError):  # the widget may already be gone
                self._widget.after_cancel(self._after_id)
            self._after_id = None
        self._executor.shutdown(wait=True, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for stream in self._streams:
            stream.thread.join(max(0.0, deadline - time.monotonic()))
            if stream.thread.is_alive():
                log.warning("%s still running %.0f s after close", stream.thread.name, timeout)
        # Results nobody will show; dropping them (and the error hook) also drops the callbacks'
        # references to the app, so it can be freed without a garbage-collection pass.
        self._report_error = None
        self._waiting.clear()
        self._keyed.clear()
        self._streams.clear()

    def _poll(self) -> None:
        """Deliver finished jobs' results and threads' messages (on the Tk thread)."""
        self._after_id = None
        self._deliver_results()
        self._deliver_messages()
        if not self._closed:
            self._after_id = self._widget.after(POLL_MS, self._poll)

    def _callback_failed(self, exc: Exception) -> None:
        if self._report_error is None:
            log.error("error in a GUI callback", exc_info=exc)
        else:
            self._report_error(exc)

    def _deliver_results(self) -> None:
        finished = [w for w in self._waiting if w.future.done()]
        self._waiting = [w for w in self._waiting if not w.future.done()]
        for item in finished:
            if item.future.cancelled():
                continue
            exc = item.future.exception()
            try:
                if exc is None:
                    item.on_done(item.future.result())
                else:
                    log.debug("background job failed", exc_info=exc)
                    item.on_error(exc)
            except Exception as callback_exc:
                self._callback_failed(callback_exc)

    def _deliver_messages(self) -> None:
        for stream in list(self._streams):
            while True:
                try:
                    message = stream.messages.get_nowait()
                except queue.Empty:
                    break
                try:
                    stream.on_message(message)
                except Exception as callback_exc:
                    self._callback_failed(callback_exc)
            if not stream.thread.is_alive() and stream.messages.empty():
                self._streams.remove(stream)
