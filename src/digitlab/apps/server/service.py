"""The inference service: decodes uploads and runs the recogniser, micro-batching requests.

A one-image request goes through three steps:

1. **decode and preprocess** (:func:`digitlab.engine.decode.decode_bytes`, then
   :func:`digitlab.engine.preprocess.to_model_input`): on the event loop itself when the
   image is a small PNG (at most :data:`INLINE_MAX_PIXELS` by its header and
   :data:`INLINE_MAX_BYTES`: a few milliseconds of work), else in the thread pool, at most
   ``settings.inference_slots()`` requests at once (one per core by default: this bounds the
   memory decoded uploads take, each up to ``max_pixels`` x 4 bytes);
2. **one forward pass shared with the other requests in flight**: the
   :class:`MicroBatcher` collects the preprocessed images of concurrent requests and runs them
   (their stability views in a second pass, for the few that need them) through
   :meth:`~digitlab.engine.recognizer.Recognizer.predict_preprocessed` in one call; it waits
   for more images at most ``settings.batch_wait_ms`` (2 ms), and only while other requests
   are still being decoded in the thread pool, so a lone request never waits;
3. the answer as a JSON-ready dict (the 28x28 preview PNG only when the client wants it).

A batch request's images take the same steps; small PNGs are preprocessed on the loop one at a
time (other requests run between two of them), then go through the batcher together.

Why small PNGs are preprocessed on the loop: a thread switch costs more than the rest of the
server's work on them (measured with one client on the 2-core machine: 0.56 ms of server CPU
per request for a 28x28 PNG), and preprocessing is numpy and Pillow work on small arrays that
holds the interpreter lock most of the time, so threads gain little parallel work for it. The
batching comes from the loop itself: requests that arrive together are preprocessed one after
another, each queueing its image, and the batcher task runs after them with all their images.
A pass of at most :data:`INLINE_PASS_IMAGES` image runs on the loop too (a lone request then
costs no thread switch at all); a larger one runs on the batcher's thread, where ONNX Runtime
and PyTorch release the lock, so the loop reads and preprocesses the next requests meanwhile.

A large image that finds the batcher idle (no pass running or queued, no other request being
decoded) has nothing to share a pass with: it runs all three steps in one trip to the thread
pool.

Numbers take their own path (``Recognizer.read_number``), on the loop for a small PNG, else in
the thread pool; explanations (``?explain=true``, ``Recognizer.predict``) in the thread pool.
Every user error is a typed ``core.errors`` exception, mapped to its status by
:mod:`digitlab.apps.server.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi.concurrency import run_in_threadpool

from digitlab.apps.server.errors import status_of
from digitlab.apps.server.settings import ServerSettings
from digitlab.apps.server.uploads import UPLOAD, BatchItem, Strokes
from digitlab.core.constants import IMAGE_SIDE
from digitlab.core.errors import DigitlabError
from digitlab.engine.decode import decode_bytes, header_info
from digitlab.engine.preprocess import Preprocessed, to_model_input
from digitlab.engine.recognizer import Prediction

logger = logging.getLogger(__name__)

# Top-k entries returned per prediction (the page shows the top three).
TOP_K = 3
MS = 1e-3
# Images of at most this many pixels (by their header) are decoded and preprocessed on the event
# loop. Decoding and preprocessing a noisy photo-like PNG took 2.2-2.7 ms at 280x280 and
# 4.5-8.1 ms at 512x512 (grey / RGB) on the 2-core machine with another job running: the
# longest one request holds the loop. The page's 280x280 canvas (78,400 pixels) is well inside.
INLINE_MAX_PIXELS = 512 * 512
# ... and only PNG files of at most this many bytes: a PNG's decoding costs in proportion to its
# bytes and pixels, while other formats can cost more than their pixels say (a GIF's frames are
# all read to count them: 3,000 frames in 1.4 MB took 9.8 ms before its first frame; a
# progressive JPEG is decoded scan by scan), and such an upload should hold a thread-pool
# slot, not the loop every client shares.
INLINE_MAX_BYTES = 1024 * 1024
INLINE_FORMATS = ("PNG",)
# A forward pass over at most this many images runs on the event loop (~0.4 ms for one image,
# less than the thread switch it saves); a larger one on the batcher's thread.
INLINE_PASS_IMAGES = 1


@dataclass
class _Job:
    """Images of one request waiting for the next forward pass."""

    items: list[Preprocessed]
    finish: Callable[[Prediction], Any]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Runs the preprocessed images of concurrent requests through the model together.

    One asyncio task on the server's event loop takes the queued jobs and runs them as one
    :meth:`Recognizer.predict_preprocessed` call (all their images in one batch, the stability
    views of those that need them in one more), then ``finish`` on each prediction (it encodes
    the preview PNG), and hands each job its results: on the loop for a pass of at most
    ``inline_images`` images, else on a dedicated thread. Passes run one at a time; requests
    that come in during a pass form the next one. Before a pass the batcher waits for more
    images at most ``max_wait_s``, and only while ``preparing`` (requests being decoded in the
    thread pool right now) is above 0.
    """

    def __init__(
        self,
        predict: Callable[[list[Preprocessed]], list[Prediction]],
        *,
        max_wait_s: float,
        max_items: int,
        inline_images: int = INLINE_PASS_IMAGES,
    ) -> None:
        self.predict = predict
        self.max_wait_s = max_wait_s
        self.max_items = max_items
        self.inline_images = inline_images
        self.preparing = 0
        self.passes = 0  # forward passes run (for tests and logs)
        self.images = 0  # images they held
        self.inline_passes = 0  # passes run on the event loop
        self.running = False  # a pass is running now
        self.alone = 0  # requests running on their own (they found the batcher idle)
        self._queue: list[_Job] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="digitlab-batch")

    def start(self) -> None:
        """Start the batching task (on the running event loop)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="digitlab-batcher")

    async def stop(self) -> None:
        """Stop the task and the thread; queued jobs fail."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._queue.clear()
        self._executor.shutdown(wait=False)

    def idle(self) -> bool:
        """No pass running or queued, no request being decoded or running on its own: a new
        request would have nothing to share a pass with."""
        return not self.running and not self._queue and self.preparing == 0 and self.alone == 0

    def done_preparing(self) -> None:
        """A request finished decoding (whether or not it will submit): stop waiting for it."""
        self.preparing -= 1
        if self._wake is not None:
            self._wake.set()

    async def submit(self, items: list[Preprocessed], finish: Callable[[Prediction], Any]) -> list:
        """``finish(prediction)`` for each of ``items``, after the pass that includes them."""
        if not items:
            return []
        assert self._wake is not None, "the batcher is not started"
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(items, finish, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._gather_more(loop)
                jobs = self._take()
                self.running = True
                try:
                    if sum(len(job.items) for job in jobs) <= self.inline_images:
                        self.inline_passes += 1
                        results = self._pass(jobs)  # cheaper than the thread switch it saves
                    else:
                        results = await loop.run_in_executor(self._executor, self._pass, jobs)
                except Exception as exc:  # a bug in the engine: fail these requests, not the loop
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                finally:
                    self.running = False
                for job, result in zip(jobs, results, strict=True):
                    if not job.future.done():  # the client may have gone away
                        job.future.set_result(result)

    async def _gather_more(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait (at most ``max_wait_s``) for requests that are being decoded right now."""
        assert self._wake is not None
        deadline = loop.time() + self.max_wait_s
        while self.preparing > 0 and self._queued_images() < self.max_items:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _queued_images(self) -> int:
        return sum(len(job.items) for job in self._queue)

    def _take(self) -> list[_Job]:
        """Whole jobs from the queue, up to ``max_items`` images (at least one job)."""
        count, taken = 0, 0
        for job in self._queue:
            if taken and count + len(job.items) > self.max_items:
                break
            count += len(job.items)
            taken += 1
        jobs, self._queue = self._queue[:taken], self._queue[taken:]
        return jobs

    def _pass(self, jobs: list[_Job]) -> list[list[Any]]:
        """One forward pass over every job's images (runs on the batcher's thread)."""
        items = [item for job in jobs for item in job.items]
        predictions = self.predict(items)
        self.passes += 1
        self.images += len(items)
        out, start = [], 0
        for job in jobs:
            chunk = predictions[start : start + len(job.items)]
            start += len(job.items)
            out.append([job.finish(p) for p in chunk])
        return out


def _inline_size(data: bytes) -> bool:
    """A PNG of at most :data:`INLINE_MAX_BYTES` whose header says it has at most
    :data:`INLINE_MAX_PIXELS` pixels: cheap enough to decode on the event loop."""
    if len(data) > INLINE_MAX_BYTES:
        return False
    info = header_info(data)
    return info is not None and info[0] in INLINE_FORMATS and info[1] <= INLINE_MAX_PIXELS


def prediction_dict(prediction: Prediction, *, images: bool) -> dict[str, Any]:
    """The API's JSON for one prediction (the preview PNG only with ``images``)."""
    return prediction.to_dict(images=images)


class InferenceService:
    """The recogniser behind the routes: decoding, micro-batched prediction, numbers.

    Call :meth:`start` and :meth:`stop` on the event loop (the app's lifespan does).
    """

    def __init__(self, recognizer: Any, settings: ServerSettings) -> None:
        self.recognizer = recognizer
        self.settings = settings
        self.batcher = MicroBatcher(
            self._predict_preprocessed,
            max_wait_s=settings.batch_wait_ms * MS,
            max_items=settings.batch_items,
        )
        self._slots: asyncio.Semaphore | None = None
        self.solo = 0  # large images that found nothing to batch with (answered in one trip)
        self.inline = 0  # images decoded and preprocessed on the event loop
        # The engine's read_number takes the drawing's strokes in newer versions.
        parameters = inspect.signature(recognizer.read_number).parameters
        self.number_takes_strokes = "strokes" in parameters

    def _predict_preprocessed(self, items: list[Preprocessed]) -> list[Prediction]:
        return self.recognizer.predict_preprocessed(items, top_k=TOP_K)

    async def start(self) -> None:
        """Create the loop-bound parts, warm the model up and start the batcher."""
        self._slots = asyncio.Semaphore(self.settings.inference_slots())
        await run_in_threadpool(self.warm_up)
        self.batcher.start()

    async def stop(self) -> None:
        """Stop the batcher."""
        await self.batcher.stop()

    def warm_up(self) -> None:
        """Predict one drawn stroke so that the first real request is not the slow one."""
        side, middle = IMAGE_SIDE, IMAGE_SIDE // 2
        image = np.zeros((side, side), np.uint8)
        image[side // 5 : side * 4 // 5, middle - 1 : middle + 2] = 255
        self.recognizer.predict(image, top_k=TOP_K)

    def _decode(self, data: bytes, name: str) -> Any:
        return decode_bytes(data, name, self.settings.max_pixels)

    def _prepare(self, data: bytes, name: str) -> Preprocessed:
        return to_model_input(self._decode(data, name))

    def _prepare_many(self, items: list[BatchItem]) -> list[Preprocessed | DigitlabError]:
        out: list[Preprocessed | DigitlabError] = []
        for item in items:
            if item.error is not None:
                out.append(item.error)
                continue
            try:
                out.append(self._prepare(item.data, item.name))
            except DigitlabError as exc:
                out.append(exc)
        return out

    async def _in_slot(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` in the thread pool, within the decoding slots."""
        assert self._slots is not None, "the service is not started"
        async with self._slots:
            return await run_in_threadpool(func, *args)

    async def _prepare_in_pool(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` (decoding and preprocessing) in a thread-pool slot, counted in
        ``batcher.preparing`` meanwhile so that the batcher waits for its images."""
        self.batcher.preparing += 1
        try:
            return await self._in_slot(func, *args)
        finally:
            self.batcher.done_preparing()

    async def predict(
        self, data: bytes, *, explain: bool = False, images: bool = True
    ) -> dict[str, Any]:
        """One image's prediction as a JSON-ready dict."""
        if explain:
            return await self._in_slot(self._explain, data, images)
        if _inline_size(data):
            # A small PNG: preprocessed right here on the loop (no thread switch); its pass
            # is shared with every request that was ready beside it.
            self.inline += 1
            pre = self._prepare(data, UPLOAD)
        elif self.batcher.idle():
            # Nothing to batch with: decode, predict and encode in one trip to the thread
            # pool (each trip is a context switch, which costs most on a busy machine).
            self.solo += 1
            self.batcher.alone += 1
            try:
                return await self._in_slot(self._predict_alone, data, images)
            finally:
                self.batcher.alone -= 1
        else:
            pre = await self._prepare_in_pool(self._prepare, data, UPLOAD)
        (result,) = await self.batcher.submit([pre], lambda p: prediction_dict(p, images=images))
        return result

    def _predict_alone(self, data: bytes, images: bool) -> dict[str, Any]:
        (prediction,) = self._predict_preprocessed([self._prepare(data, UPLOAD)])
        return prediction_dict(prediction, images=images)

    def _explain(self, data: bytes, images: bool) -> dict[str, Any]:
        prediction = self.recognizer.predict(self._decode(data, UPLOAD), top_k=TOP_K, explain=True)
        out = prediction.to_dict(images=True)
        if not images:
            out["preprocessed"] = None
        return out

    async def predict_batch(self, items: list[BatchItem], *, images: bool = True) -> list[dict]:
        """Each image's prediction, in order; an unreadable image gets an error object.

        When every image is small they are preprocessed on the loop, one at a time, letting
        other requests run between two of them; else all in one trip to the thread pool."""
        if all(_inline_size(item.data) for item in items if item.error is None):
            prepared = []
            for item in items:
                prepared.extend(self._prepare_many([item]))
                self.inline += item.error is None
                await asyncio.sleep(0)  # one image at a time holds the loop
        else:
            prepared = await self._prepare_in_pool(self._prepare_many, items)
        good = [p for p in prepared if isinstance(p, Preprocessed)]
        answers = iter(await self.batcher.submit(good, lambda p: prediction_dict(p, images=images)))
        return [
            next(answers)
            if isinstance(p, Preprocessed)
            else {"status": status_of(p), "detail": str(p)}
            for p in prepared
        ]

    async def read_number(
        self, data: bytes, *, strokes: Strokes | None = None, images: bool = True
    ) -> dict[str, Any]:
        """A multi-digit number with one box and prediction per digit (on the loop for a
        small PNG: ~16 ms for three digits, less than the queue a thread-pool slot builds under
        load, where the loop's work would starve the slot's thread of the interpreter lock)."""
        if _inline_size(data):
            self.inline += 1
            return self._read_number(data, strokes, images)
        return await self._in_slot(self._read_number, data, strokes, images)

    def _read_number(self, data: bytes, strokes: Strokes | None, images: bool) -> dict[str, Any]:
        image = self._decode(data, UPLOAD)
        kwargs: dict[str, Any] = {"top_k": TOP_K}
        if strokes is not None and self.number_takes_strokes:
            kwargs["strokes"] = strokes
        return self.recognizer.read_number(image, **kwargs).to_dict(images=images)
