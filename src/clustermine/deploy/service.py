"""The HTTP service: a deployed detector behind FastAPI (``clustermine serve``, docs/deploy.md).

``POST /score`` takes one or more images (multipart form, file fields named ``files``) and
returns, per image, the score, p-value and decision, and for label-mining detectors the best
matching positive and negative label. ``GET /health``, ``GET /info``, ``GET /drift`` (the
drift monitor's state, :mod:`clustermine.drift`) and ``GET /metrics`` (Prometheus,
:mod:`clustermine.deploy.metrics`); OpenAPI docs at ``/docs``. Images of concurrent
requests are batched onto the model by one worker (:class:`Batcher`), which also keeps the
calls of a detector that adapts at test time in arrival order. Uploads beyond the limits
(:class:`Limits`) and files that are not images get a 4xx answer naming the file; the
service keeps serving. The request size is enforced while the body streams in
(:class:`BodyLimit`), an image's pixel count is checked from its header before it is decoded,
and a large JPEG is decoded at a reduced scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.datastructures import Headers, UploadFile
from starlette.requests import ClientDisconnect

from clustermine.deploy.detector import DeployedDetector
from clustermine.deploy.inputs import TooManyPixels, describe_error
from clustermine.deploy.metrics import CountRequests, ServiceMetrics

log = logging.getLogger(__name__)

FIELD = "files"


class MatchedLabel(BaseModel):
    name: str
    cosine: float


class ImageResult(BaseModel):
    filename: str
    score: float
    p_value: float | None = None
    ood: bool | None = None
    top_positive: MatchedLabel | None = None
    top_negative: MatchedLabel | None = None


class ScoreResponse(BaseModel):
    threshold: float | None
    id_acceptance: float
    results: list[ImageResult]


@dataclass(frozen=True)
class Limits:
    """What one request may hold, and how requests are batched onto the model
    (docs/deploy.md says what each limit protects)."""

    max_upload_bytes: int = 20 * 2**20  # per image file
    max_images: int = 64  # per request
    max_pixels: int = 40_000_000  # per image (width × height), from its header
    max_batch: int = 64  # images per model call
    max_wait_ms: float = 5.0  # how long a batch waits for more images

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            smallest_allowed = 0 if key == "max_wait_ms" else 1
            if value < smallest_allowed:
                raise ValueError(f"service limit {key} must be at least {smallest_allowed}, "
                                 f"got {value}")  # fmt: skip

    @property
    def max_request_bytes(self) -> int:
        return self.max_images * self.max_upload_bytes + 2**20  # files plus form overhead

    def request_too_large(self, size: str) -> str:
        return (f"request of {size} bytes is larger than {self.max_request_bytes:,} (at most "
                f"{self.max_images} images of {self.max_upload_bytes:,} bytes each)")  # fmt: skip


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class BodyLimit:
    """ASGI middleware: a request body larger than ``limits.max_request_bytes`` gets a 413 as
    soon as it is declared (Content-Length) or, streamed without one, as soon as that much has
    arrived, never after reading all of it; a client that disconnects before its request is
    read is one line in the log, not a traceback."""

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_request_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            answer = {"detail": self.limits.request_too_large(f"{int(declared):,}")}
            await JSONResponse(answer, 413)(scope, receive, send)
            return
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # answered by the RequestError handler
                    raise RequestError(413, self.limits.request_too_large(f"over {limit:,}"))
            return message

        try:
            await self.app(scope, counted_receive, send)
        except ClientDisconnect:
            host, port = scope.get("client") or ("?", "?")
            log.warning(
                "client %s:%s disconnected during its request to %s (after %s bytes of it); "
                "nothing was scored", host, port, scope["path"], f"{received:,}",
            )  # fmt: skip


class Batcher:
    """Gathers the images of concurrent requests into model calls of at most ``max_batch``
    images, waiting at most ``max_wait`` seconds for more; one call at a time, in order."""

    def __init__(self, fn: Callable[[Any], list], max_batch: int, max_wait: float):
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.stats = {"requests": 0, "images": 0, "model_calls": 0, "model_seconds": 0.0}

    async def submit(self, pixels) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((pixels, future))
        return await future

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        import torch

        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            size = len(items[0][0])
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    item = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
                items.append(item)
                size += len(item[0])
            t0 = time.perf_counter()
            try:
                rows = await asyncio.to_thread(self.fn, torch.cat([p for p, _ in items]))
            except Exception as err:  # noqa: BLE001 - the requests get the error
                log.exception("model call failed")
                for _, future in items:
                    if not future.done():
                        future.set_exception(err)
                continue
            self.stats["model_calls"] += 1
            self.stats["model_seconds"] += time.perf_counter() - t0
            start = 0
            for pixels, future in items:
                if not future.done():
                    future.set_result(rows[start : start + len(pixels)])
                start += len(pixels)


def create_app(detector: DeployedDetector, limits: Limits = Limits()):
    """The FastAPI application serving ``detector``."""
    detector.max_pixels = limits.max_pixels
    labels_wanted = bool(len(detector.detector.text_pos.names))

    def score_batch(pixels) -> list[dict[str, Any]]:
        f = detector.encode_pixels(pixels)
        # predict checks every row: NaN or infinite embeddings and scores get an error
        out = detector.predict(embeddings=f.embeddings, local=f.local, views=f.views,
                               top_labels=labels_wanted)  # fmt: skip
        return out.rows()

    batcher = Batcher(score_batch, limits.max_batch, limits.max_wait_ms / 1000.0)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    info = detector.describe()
    app = FastAPI(
        title="clustermine detector",
        description=(
            f"OOD detection with method {info['method'] or info['score']} (ID set "
            f"{info['idset']}, model {info['model']['arch']}). Higher scores are more "
            "in-distribution; images scoring below the threshold are flagged OOD."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limits=limits)
    metrics = ServiceMetrics(detector)
    app.add_middleware(CountRequests, metrics=metrics)  # outermost: sees every answer

    @app.exception_handler(RequestError)
    async def request_error(request, err: RequestError):
        return JSONResponse({"detail": err.message}, status_code=err.status)

    @app.get("/health")
    async def health():
        if batcher.task is None or batcher.task.done():
            return JSONResponse({"status": "down: the model worker has stopped"}, 503)
        return {"status": "ok"}

    @app.get("/drift")
    async def get_drift() -> dict[str, Any]:
        """The drift monitor: tumbling windows of scored images tested against the
        calibration ("new things arrive", "the ID moved"), with effect sizes."""
        if detector.drift is None:
            return {"enabled": False, "verdict": "no drift monitor: the detector has no "
                    "calibration (refit it on an ID set with a test set)"}  # fmt: skip
        return {"enabled": True, **detector.drift.state()}

    @app.get("/metrics")
    async def get_metrics() -> Response:
        """Prometheus metrics: requests, images, errors, latency, scores, drift."""
        body, kind = metrics.render()
        return Response(body, media_type=kind)

    @app.get("/info")
    async def get_info() -> dict[str, Any]:
        return {**detector.describe(), "limits": asdict(limits),
                "served": dict(batcher.stats)}  # fmt: skip

    @app.post(
        "/score",
        response_model=ScoreResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": [FIELD],
                            "properties": {
                                FIELD: {"type": "array",
                                        "items": {"type": "string", "format": "binary"}},
                            },
                        }  # fmt: skip
                    }
                },
            }
        },
        responses={
            413: {"description": "too many images, or an image too large in bytes or pixels"},
            415: {"description": "the body is not multipart/form-data"},
            422: {"description": "no images, or a file that is not a readable image"},
            500: {"description": "an image the model gives no finite embedding or score for"},
        },
    )
    async def score(request: Request) -> ScoreResponse:
        """Score one or more images, sent as multipart file fields named `files`."""
        uploads = await _read_uploads(request, limits)
        pixels = await run_in_threadpool(_preprocess_all, detector, uploads)
        rows = await batcher.submit(pixels)
        batcher.stats["requests"] += 1
        batcher.stats["images"] += len(rows)
        metrics.observe_rows(rows)
        failed = [f"{name}: {row['error']}" for (name, _), row in zip(uploads, rows)
                  if row["error"]]  # fmt: skip
        if failed:
            log.warning("not scored: %s", "; ".join(failed))
            raise RequestError(500, "not scored: " + "; ".join(failed))
        return ScoreResponse(
            threshold=detector.threshold,
            id_acceptance=detector.id_acceptance,
            results=[
                ImageResult(filename=name, **{k: v for k, v in row.items()
                                              if k not in ("path", "error")})
                for (name, _), row in zip(uploads, rows)
            ],  # fmt: skip
        )

    return app


async def _read_uploads(request, limits: Limits) -> list[tuple[str, bytes]]:
    """The uploaded files as ``(filename, bytes)``, every limit checked."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise RequestError(
            415, f"send the images as multipart/form-data file fields named '{FIELD}' "
            f"(got content type {kind or 'none'!r})",
        )  # fmt: skip
    # The size of the whole request is limited by BodyLimit, as it streams in.
    form = await request.form(max_files=limits.max_images + 1, max_fields=limits.max_images + 16)
    try:
        return await _files_of(form, limits)
    finally:
        await form.close()


async def _files_of(form, limits: Limits) -> list[tuple[str, bytes]]:
    values = form.getlist(FIELD)
    if not values:
        raise RequestError(
            422, f"no images: send them as multipart file fields named '{FIELD}' "
            f"(this request has fields {sorted(set(form.keys()))})",
        )  # fmt: skip
    if len(values) > limits.max_images:
        raise RequestError(413, f"more than {limits.max_images} images in one request; "
                                "split them over several requests")  # fmt: skip
    out = []
    for i, value in enumerate(values, 1):
        if not isinstance(value, UploadFile):
            raise RequestError(422, f"field '{FIELD}' number {i} is text, not a file upload")
        name = value.filename or f"file {i}"
        if value.size is not None and value.size > limits.max_upload_bytes:
            raise RequestError(
                413, f"{name}: {value.size:,} bytes, larger than the limit of "
                f"{limits.max_upload_bytes:,} bytes per image",
            )  # fmt: skip
        data = await value.read()
        if len(data) > limits.max_upload_bytes:
            raise RequestError(413, f"{name}: larger than {limits.max_upload_bytes:,} bytes")
        out.append((name, data))
    return out


def _preprocess_all(detector: DeployedDetector, uploads: list[tuple[str, bytes]]):
    """The model input of every upload: pixel counts checked from the headers, large JPEGs
    decoded at a reduced scale."""
    import torch

    tensors = []
    for name, data in uploads:
        try:
            tensors.append(detector.preprocess(data, draft=True))
        except TooManyPixels as err:
            raise RequestError(413, f"{name}: {err} (the service's --max-pixels)") from None
        except Exception as err:  # noqa: BLE001 - anything Pillow raises: not a usable image
            message = f"{name}: not a readable image ({describe_error(err)})"
            raise RequestError(422, message) from None
    return torch.stack(tensors)


def serve(
    detector: DeployedDetector,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits = Limits(),
    log_level: str = "info",
) -> None:
    """Build the model, then serve until interrupted."""
    import uvicorn

    detector.model  # noqa: B018 - fail at start, not at the first request
    app = create_app(detector, limits)
    info = detector.describe()
    log.warning(
        "serving %s (%s, ID set %s, threshold %s) on http://%s:%d (API docs: /docs)",
        info["method"] or info["score"], info["model"]["arch"], info["idset"],
        _fmt(info["threshold"]), host, port,
    )  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _fmt(value) -> str:
    return "none" if value is None else f"{value:.6g}"


__all__ = ["Batcher", "BodyLimit", "Limits", "create_app", "serve"]
