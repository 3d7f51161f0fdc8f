"""HTTP server for a student: a FastAPI app over the numpy runtime, served by uvicorn (the `serve` extra).

    POST /predict   {"text": "..."} -> {"label": ..., "probabilities": {...}, "unknown_rate": ..., "reason": ...}
                    {"texts": ["...", ...]} -> {"predictions": [{"label": ..., ...}, ...]}
    GET  /health    {"status": "ok"}
    GET  /metadata  model type, labels, sizes, tokenizer settings and the server's limits
    GET  /openapi.json, /docs

Errors are JSON `{"error": "<one line>"}` (plus `"detail"` for validation errors): 400 for a body that is not
JSON, 422 for JSON of the wrong shape (a missing field, a number where a text belongs), 413 for a body over
`max_bytes` or more than `max_texts` texts. Texts longer than `max_chars` characters are cut to `max_chars`
before tokenising rather than refused: a student reads at most its `max_length` tokens from the start of a
text anyway, so the cut only bounds the tokenizer's work (it matters only for texts with fewer than
`max_length` tokens in their first `max_chars` characters).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from dataclasses import asdict, dataclass

from tinydistill import __version__, runtime
from tinydistill.errors import TinyDistillError

try:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError:
    raise TinyDistillError("serving needs fastapi and uvicorn: pip install 'tinydistill[serve]'") from None

log = logging.getLogger(__name__)
INLINE_TEXTS, INLINE_CHARS = 16, 20_000  # requests up to this size are answered on the event loop


@dataclass
class Limits:
    max_texts: int = 1000  # texts per request; bounds the work (and the memory) of one request
    max_bytes: int = 2 * 1024 * 1024  # request body; checked before parsing (a 1 MB text still fits)
    max_chars: int = 100_000  # per text; longer texts are cut (see the module docstring)


class PredictRequest(BaseModel):
    """One text (`text`) or a batch (`texts`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "a gorgeous, witty film"}, {"texts": ["a gorgeous, witty film", "dull"]}]})
    text: StrictStr | None = Field(None, description="one text")
    texts: list[StrictStr] | None = Field(None, description="a batch of texts (at most the server's max_texts)")

    @model_validator(mode="after")
    def one_of(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self


class Prediction(BaseModel):
    label: str | None = Field(description="the most probable label; null when the server abstains (see reason)")
    probabilities: dict[str, float] = Field(description="the probability of every label (calibrated)")
    unknown_rate: float = Field(description="share of the text's words that are not in the model's vocabulary")
    reason: str | None = Field(None, description="why the server abstained (--min-confidence, --max-unknown)")


class Predictions(BaseModel):
    predictions: list[Prediction] = Field(description="one prediction per text, in order")


class _BearerToken:
    """Refuses requests without `Authorization: Bearer <token>` (401), except GET /health (liveness probes)."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not hmac.compare_digest(given, self.expected):
            return await JSONResponse({"error": "missing or wrong bearer token (Authorization: Bearer ...)"},
                                      status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
        await self.app(scope, receive, send)


class _BodyLimit:
    """Refuses request bodies over `max_bytes`: at once when Content-Length says so, else while reading.

    The second case raises an HTTPException from `receive`, which FastAPI passes on to the app's handler, so
    both give the same JSON 413 as the other errors.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body is over the limit of {self.max_bytes} bytes"
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await JSONResponse({"error": message}, status_code=413)(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, message)
            return event

        await self.app(scope, limited, send)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request of the wrong shape: 400 when the body is not JSON, else 422 naming the first wrong field."""
    errors = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")} for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        return JSONResponse({"error": "request body is not valid JSON"}, status_code=400)
    first = errors[0] if errors else {"loc": ("body",), "type": "missing", "msg": ""}
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    if not where and first["type"] in ("missing", "model_attributes_type"):  # no body, or not an object
        message = 'expected a JSON object: {"text": "..."} or {"texts": ["...", ...]}'
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
        message = f"{where}: {message}" if where else message
    return JSONResponse({"error": message, "detail": jsonable_encoder(errors)}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Every HTTP error (401, 404, 413, 500, ...) as `{"error": "<one line>"}`."""
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def create_app(model: runtime.Model, limits: Limits | None = None, token: str | None = None,
               min_confidence: float | None = None, max_unknown: float | None = None) -> FastAPI:
    """The FastAPI app serving `model`; `limits` default to `Limits()`; with `token`, every endpoint but
    /health needs `Authorization: Bearer <token>`; it abstains (label null, with a reason) under
    `min_confidence` or over `max_unknown` (see `runtime.Model.predictions`)."""
    runtime.check_abstain(min_confidence, max_unknown)
    limits = limits or Limits()
    app = FastAPI(title="tinydistill", version=__version__,
                  description=f"Text classification by a tinydistill {model.model_type} student "
                  f"(labels: {', '.join(model.classes_.astype(str))}). Limits: {limits.max_texts} texts and "
                  f"{limits.max_bytes} bytes per request; texts longer than {limits.max_chars} characters are cut.")
    app.add_middleware(_BodyLimit, max_bytes=limits.max_bytes)
    if token:
        app.add_middleware(_BearerToken, token=token)  # added last: runs first, before the body is read

    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(StarletteHTTPException)(_http_error)

    def answer(texts: list[str]) -> list[dict]:
        try:
            return model.predictions([t[:limits.max_chars] for t in texts], min_confidence, max_unknown)
        except TinyDistillError as exc:  # a damaged model (non-finite scores)
            raise HTTPException(500, str(exc)) from None

    @app.post("/predict", response_model=Prediction | Predictions, responses={
        400: {"description": "the body is not JSON"}, 413: {"description": "body or batch over the limits"},
        422: {"description": "JSON of the wrong shape"}})
    async def predict(request: PredictRequest) -> Response:
        """Label and probabilities for `text`, or for each of `texts` (in order)."""
        if request.texts is None:
            texts = [request.text or ""]  # the validator made sure that `text` is there
        elif len(request.texts) > limits.max_texts:
            raise HTTPException(413, f"too many texts: {len(request.texts)} > {limits.max_texts} per request")
        else:
            texts = request.texts
        # a few short texts take tens of microseconds: cheaper inline than a hop to the thread pool; bigger
        # requests go to the pool so that they do not hold up the event loop (and the other requests)
        if len(texts) <= INLINE_TEXTS and sum(map(len, texts)) <= INLINE_CHARS:
            predictions = answer(texts)
        else:
            predictions = await run_in_threadpool(answer, texts)
        # the answer is serialised here: `response_model` documents its shape, but validating the dicts that
        # `Model.predictions` built (always of that shape, finite) again would cost a fifth of a request
        body = predictions[0] if request.texts is None else {"predictions": predictions}
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    @app.get("/health")
    def health() -> dict:
        """Liveness: the model is loaded and the server answers."""
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict:
        """The model's type, labels, sizes and tokenizer settings, and the server's limits."""
        return {**model.metadata(), "limits": asdict(limits), "tinydistill": __version__,
                "abstain": {"min_confidence": min_confidence, "max_unknown": max_unknown}}

    return app


REQUEST_DEADLINE = 4  # a request must arrive whole within this many idle timeouts (60 s with the default 15 s)


def idle_timeout_protocol(seconds: float):
    """uvicorn's HTTP protocol (httptools, else h11), closing a connection that sends nothing for `seconds`
    while no request of it is being answered, or that takes over `REQUEST_DEADLINE` x `seconds` to send one
    request.

    uvicorn times out only the wait between two requests (`timeout_keep_alive`): a client that connects and
    sends nothing, or half a request, holds its connection (and a file descriptor) for ever otherwise; one that
    trickles a byte just inside every idle timeout would too, without the deadline.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class IdleTimeout(Base):  # type: ignore[valid-type, misc]
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._idle = self.loop.call_later(seconds, self._idle_check)
            self._since: float | None = None  # when the request being received began to arrive

        def data_received(self, data: bytes) -> None:
            self._idle.cancel()
            now = self.loop.time()
            if self._since is None:
                self._since = now
            elif now - self._since > REQUEST_DEADLINE * seconds and not self._busy():
                self.transport.close()
                return
            super().data_received(data)
            if self._busy() or self.transport.is_closing():  # a whole request reached the app (or a 4xx went out)
                self._since = None
            self._idle = self.loop.call_later(seconds, self._idle_check)

        def connection_lost(self, exc) -> None:
            self._idle.cancel()
            super().connection_lost(exc)

        def _busy(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is not None and not cycle.response_complete and not getattr(cycle, "more_body", False)

        def _idle_check(self) -> None:
            if self._busy():  # the app is working on a whole request: its answer is on the way
                self._idle = self.loop.call_later(seconds, self._idle_check)
            elif not self.transport.is_closing():
                self.transport.close()

    return IdleTimeout


LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "TINYDISTILL_TOKEN"


def serve(model_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          log_level: str = "info", token: str | None = None, idle_timeout: float = 15.0,
          min_confidence: float | None = None, max_unknown: float | None = None) -> None:
    """Load the student in `model_dir` and serve it with uvicorn until interrupted.

    `token` (else $TINYDISTILL_TOKEN) makes every endpoint but /health require `Authorization: Bearer <token>`;
    binding beyond loopback without one logs a warning. A connection idle for `idle_timeout` seconds is closed.
    It abstains (label null, with a reason) under `min_confidence` or over `max_unknown`.
    """
    try:
        import uvicorn
    except ImportError:
        raise TinyDistillError("serving needs fastapi and uvicorn: pip install 'tinydistill[serve]'") from None
    token = token or os.environ.get(TOKEN_ENV) or None
    if idle_timeout <= 0:
        raise TinyDistillError(f"idle timeout {idle_timeout}: expected a number of seconds > 0")
    model = runtime.load(model_dir)
    app = create_app(model, limits, token, min_confidence, max_unknown)
    if host not in LOOPBACK and not token:
        log.warning("serving on %s without a token: anyone who can reach this address can use the model; "
                    "set --token or $%s to require one", host, TOKEN_ENV)
    log.info("serving %s (%s, labels %s) on http://%s:%d", model_dir, model.model_type,
             model.classes_.tolist(), host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,  # per-request logs halve rps
                http=idle_timeout_protocol(idle_timeout))
