"""A detector bundle made in seconds, the service behind a real uvicorn server on 127.0.0.1, and
the image bytes the service tests upload (tests/test_service.py, tests/test_bad_input_corpus.py)."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import TINY_WORDS, make_image_folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_detector(root: Path) -> Path:
    """An Eq. 1 detector on the tiny model (random weights), calibrated, saved as a bundle."""
    from clustermine.datasets import index_imagefolder
    from clustermine.deploy.bundle import export_bundle
    from clustermine.detectors import get_detector
    from clustermine.encode import encode_images
    from clustermine.encode_text import encode_texts
    from clustermine.h5io import TextEmbeddings
    from clustermine.models import load_model

    make_image_folder(root / "id", {"dog": 6, "cat": 6}, seed=1)
    make_image_folder(root / "ood", {"tree": 4}, seed=3)
    loaded = load_model("clustermine-tiny", None, "cpu")
    held_out = encode_images(loaded, index_imagefolder(root / "id"))
    held_out.attrs.update(loaded.attrs())
    text = encode_texts(loaded, TINY_WORDS, ["a photo of a {}."])
    meta = {"model": "tiny", "idset": "pets", "method": "clustermine", "labels": "mined",
            **{k: held_out.attrs[k] for k in ("model_arch", "model_pretrained", "preprocessing",
                                              "random_weights", "library_versions")}}  # fmt: skip
    det = get_detector("eq1").fit(
        None, TextEmbeddings(text[:2], TINY_WORDS[:2]), TextEmbeddings(text[2:], TINY_WORDS[2:]),
        loaded.logit_scale, meta=meta, device="cpu",
    )  # fmt: skip
    det.calibrate(det.score(held_out.embeddings, held_out.attrs), "pets-test")
    det.save(root / "detector.h5")
    export_bundle(root / "detector.h5", root / "bundle")
    return root / "bundle"


def upload(paths):
    return [("files", (Path(p).name, Path(p).read_bytes(), "image/png")) for p in paths]


def png_bytes(size, seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds almost none."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))  # fmt: skip


def jpeg_bytes(size: int) -> bytes:
    """A smooth ``size`` x ``size`` JPEG (small in bytes, large in pixels)."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    pixels = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                       np.full((size, size), 128, np.float32)], axis=-1)  # fmt: skip
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@contextlib.contextmanager
def serving(detector, limits):
    """``create_app`` behind a real uvicorn server on 127.0.0.1, in a thread of this process;
    yields the server's URL."""
    import uvicorn

    from clustermine.deploy.service import create_app

    port = free_port()
    app = create_app(detector, limits)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
