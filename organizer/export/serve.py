"""`organizer serve`: the current model behind a small HTTP API (FastAPI + uvicorn, extra `serve`).

Safe by default: loopback only unless --host names another address, and then a token is
required (`Authorization: Bearer TOKEN`); uploads are limited in bytes here and in pixels
by the decoder, as for indexing; URLs are never fetched. Each request checks which model
is current (one indexed SQLite read), so `organizer train` or `organizer models --use`
takes effect without a restart.

Inference runs one batch at a time (the network uses every core already); decoding runs in
the request threads alongside it.

No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at runtime."""
import base64
import binascii
import hmac
import ipaddress
import json
import sqlite3
import threading
from pathlib import Path

import numpy as np

MAX_UPLOAD_BYTES = 50 << 20     # a 100-megapixel JPEG is about 30 MB
MAX_BATCH = 64


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def status_of(message: str) -> int:
    """HTTP status for a decoder message: 413 too large, 415 not an image we read, else 400."""
    if "too large" in message:
        return 413
    if "unsupported format" in message or "not an image" in message:
        return 415
    return 400


class Predictor:
    """The store's current model and its backbone, reloaded when another model becomes current."""

    def __init__(self, store_dir, max_pixels: int | None = None):
        from organizer.embed import get_embedder
        from organizer.store import DB_NAME, Store, StoreError

        self.store_dir = Path(store_dir)
        store = Store(self.store_dir, create=False)
        try:
            if not store.backbone:
                raise StoreError("the store has no images yet: run `organizer index FOLDER` first")
            self.backbone = store.backbone
        finally:
            store.close()
        self.embedder = get_embedder(self.backbone, store_backbone=self.backbone, quiet=True,
                                     cache_dir=self.store_dir / "cache")
        self.max_pixels = max_pixels
        self._db = sqlite3.connect(f"file:{self.store_dir / DB_NAME}?mode=ro", uri=True, check_same_thread=False,
                                   timeout=30)
        self._db_lock = threading.Lock()
        self._infer = threading.Lock()
        self._model = None
        self._model_id = None
        self._reload = threading.Lock()

    def current_id(self) -> int | None:
        with self._db_lock:
            row = self._db.execute("SELECT id FROM models WHERE current=1 ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def model(self):
        from organizer.learn.model import TrainError, load_model
        from organizer.store import Store

        current = self.current_id()
        if current is None:
            raise ApiError(503, "no trained model yet: run `organizer train` first")
        if current != self._model_id:
            with self._reload:
                if current != self._model_id:
                    store = Store(self.store_dir, create=False)
                    try:
                        self._model = load_model(store, current)
                    except TrainError as e:
                        raise ApiError(503, str(e)) from None
                    finally:
                        store.close()
                    self._model_id = current
        return self._model_id, self._model

    def pixels(self, data: bytes, name: str) -> np.ndarray:
        from organizer.ingest.decode import DecodeError, decode_image

        pre = self.embedder.preprocess
        try:
            return pre(decode_image(data, name=name, min_side=max(pre.size, 256), max_pixels=self.max_pixels).image)
        except DecodeError as e:
            raise ApiError(status_of(str(e)), str(e)) from None

    def predict(self, images: list[tuple[bytes, str]], top: int = 5) -> list[dict]:
        batch = np.stack([self.pixels(data, name) for data, name in images])
        model_id, model = self.model()
        with self._infer:
            vectors = self.embedder.embed_arrays(batch)[0]
        proba = model.predict_proba(vectors)
        out = []
        for p, (label, best, conf, _) in zip(proba, model.predict(vectors)):
            order = np.argsort(-p)[:max(1, top)]
            out.append({"labelName": label, "best": best, "confidence": round(conf, 4),
                        "top": [{"labelName": model.classes[i], "confidence": round(float(p[i]), 4)} for i in order],
                        "model": model_id})
        return out

    def labels(self) -> dict:
        model_id, model = self.model()
        return {"model": model_id, "labels": [{"labelName": c, "threshold": round(model.threshold_for(c), 4)}
                                              for c in model.classes]}

    def model_info(self) -> dict:
        model_id, model = self.model()
        with self._db_lock:
            row = self._db.execute("SELECT created_at, metrics, n_train FROM models WHERE id=?", (model_id,)).fetchone()
        metrics = json.loads(row[1]) if row else {}
        return {"id": model_id, "backbone": model.backbone, "classes": model.classes, "created_at": row[0] if row else None,
                "n_train": row[2] if row else None, "threshold": model.threshold,
                "accuracy": metrics.get("accuracy"), "macro_f1": metrics.get("macro_f1"),
                "runtime": self.embedder.runtime}


def _decode_b64(value, where: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(400, f"{where}: expected a base64 string")
    if value.startswith("data:"):  # a data: URL is base64 with a header
        value = value.split(",", 1)[-1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}: not valid base64") from None


def _json_images(body: bytes, batch: bool) -> list[tuple[bytes, str]]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    items = (doc.get("images") if batch else [doc]) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(400, 'expected {"image": BASE64}' if not batch else 'expected {"images": [{"image": BASE64}, ...]}')
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"image": item}
        if not isinstance(item, dict):
            raise ApiError(400, f"images[{i}]: expected an object with an image field")
        if "url" in item and "image" not in item:
            raise ApiError(400, "URLs are not fetched: send the image itself (multipart upload or base64)")
        name = str(item.get("name") or f"image {i}")[:200]
        out.append((_decode_b64(item.get("image"), name), name))
    return out


def create_app(store_dir, *, token: str | None = None, max_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int | None = None):
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ImportError:
        from organizer.store import StoreError

        raise StoreError('the prediction API needs FastAPI and uvicorn: pip install "organizer[serve]"') from None

    predictor = Predictor(store_dir, max_pixels=max_pixels)
    app = FastAPI(title="organizer prediction API", version="1",
                  description="Labels for images from the current model of an organizer store.")
    upload_doc = {"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}}},
        "application/json": {"schema": {"type": "object", "properties": {
            "image": {"type": "string", "description": "base64 image file"}}}}}}}
    batch_doc = {"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        "application/json": {"schema": {"type": "object", "properties": {
            "images": {"type": "array", "items": {"type": "object", "properties": {
                "image": {"type": "string"}, "name": {"type": "string"}}}}}}}}}}

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"error": "missing or wrong token: send Authorization: Bearer TOKEN"}, 401,
                                    headers={"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes:
            return JSONResponse({"error": f"upload of {int(length)} bytes is over the limit of {max_bytes}"}, 413)
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(_request, e: ApiError):
        return JSONResponse({"error": str(e)}, e.status)

    async def read_images(request: Request, batch: bool) -> list[tuple[bytes, str]]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            # read under the limit first: a chunked upload has no Content-Length to refuse early
            request._body = await _body(request, max_bytes)  # Starlette parses the form from _body
            try:
                form = await request.form(max_files=MAX_BATCH + 1, max_fields=16)
            except Exception as e:  # the multipart parser's errors: a malformed body
                raise ApiError(400, f"malformed multipart body ({type(e).__name__})") from None
            out = []
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    out.append((await value.read(), (value.filename or key)[:200]))
            if not out:
                raise ApiError(400, "no file in the form: send the image as a file field")
        elif kind in ("application/json", ""):
            body = await _body(request, max_bytes)
            if not body and kind == "":
                raise ApiError(400, "empty request: send a multipart upload or JSON with base64 images")
            out = _json_images(body, batch)
        elif kind.startswith("image/") or kind == "application/octet-stream":
            out = [(await _body(request, max_bytes), "upload")]
        else:
            raise ApiError(415, f"content type {kind!r} is not accepted: use multipart/form-data, "
                                "application/json (base64) or an image/* body")
        if not batch and len(out) != 1:
            raise ApiError(400, f"{len(out)} images sent to /v1/predict: use /v1/predict/batch")
        if len(out) > MAX_BATCH:
            raise ApiError(413, f"{len(out)} images in one batch; at most {MAX_BATCH}")
        return out

    @app.post("/v1/predict", openapi_extra=upload_doc, summary="Label one image")
    async def predict_one(request: Request, top: int = 5):
        from starlette.concurrency import run_in_threadpool

        images = await read_images(request, batch=False)
        return (await run_in_threadpool(predictor.predict, images, top))[0]

    @app.post("/v1/predict/batch", openapi_extra=batch_doc, summary="Label several images")
    async def predict_batch(request: Request, top: int = 5):
        from starlette.concurrency import run_in_threadpool

        images = await read_images(request, batch=True)
        return {"results": await run_in_threadpool(predictor.predict, images, top)}

    @app.get("/v1/labels", summary="The labels the current model knows")
    def labels():
        return predictor.labels()

    @app.get("/v1/model", summary="The current model")
    def model():
        return predictor.model_info()

    @app.get("/health", summary="Liveness, and whether a model is there")
    def health():
        return {"status": "ok", "model": predictor.current_id()}

    return app


async def _body(request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (also without a Content-Length)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"upload over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def serve(store_dir, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int | None = None, log_level: str = "warning") -> None:
    import uvicorn

    from organizer.store import StoreError

    if not is_loopback(host) and not token:
        raise StoreError(f"--host {host} makes the API reachable from other machines: give --token TOKEN too "
                         "(clients send Authorization: Bearer TOKEN)")
    app = create_app(store_dir, token=token, max_bytes=max_bytes, max_pixels=max_pixels)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
