"""``clustermine serve``: a real server on 127.0.0.1, started by the test from a bundle, and
real HTTP requests: scores as the API gives them, 4xx answers to bad uploads after which the
server keeps serving, and a bounded load test (8 concurrent clients × 25 requests)."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers import TINY_WORDS
from helpers.broken_model import nan_checkpoint
from helpers.service import (
    free_port,
    jpeg_bytes,
    make_detector,
    png_bytes,
    png_header,
    serving,
    upload,
)

import clustermine
from clustermine.deploy.inputs import gather_paths, open_source
from clustermine.deploy.service import Limits

LIMITS = {"--max-upload-mb": "0.05", "--max-images": "4", "--max-pixels": "10000"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    bundle = make_detector(root)
    port = free_port()
    args = [sys.executable, "-m", "clustermine.cli", "serve", str(bundle), "--port", str(port),
            "--max-batch", "16", "--max-wait-ms", "20"]  # fmt: skip
    for key, value in LIMITS.items():
        args += [key, value]
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start:\n{(root / 'server.log').read_text()}")
        time.sleep(0.2)
    yield {"url": url, "root": root, "bundle": bundle, "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_health_and_info(server):
    assert requests.get(f"{server['url']}/health").json() == {"status": "ok"}
    info = requests.get(f"{server['url']}/info").json()
    assert info["method"] == "clustermine" and info["idset"] == "pets"
    assert info["model"]["arch"] == "clustermine-tiny" and info["bundle"] is True
    assert info["num_positives"] == 2 and info["num_negatives"] == len(TINY_WORDS) - 2
    assert info["calibration"]["dataset"] == "pets-test"
    assert info["calibration"]["num_samples"] == 12 and info["id_acceptance"] == 0.95
    assert info["limits"]["max_images"] == 4 and info["adapts_at_test_time"] is False
    docs = requests.get(f"{server['url']}/openapi.json").json()
    assert "/score" in docs["paths"] and "multipart/form-data" in str(docs["paths"]["/score"])


def test_scores_agree_with_the_python_api(server):
    paths = gather_paths([server["root"] / "id" / "dog", server["root"] / "ood"])[:4]
    r = requests.post(f"{server['url']}/score", files=upload(paths))
    assert r.status_code == 200, r.text
    body = r.json()
    api = clustermine.load_detector(server["bundle"], device="cpu")
    want = api.predict(paths, top_labels=True).rows()
    assert body["threshold"] == api.threshold
    assert [x["filename"] for x in body["results"]] == [Path(p).name for p in paths]
    for got, row in zip(body["results"], want):
        assert got["score"] == pytest.approx(row["score"], rel=1e-5)
        assert got["p_value"] == row["p_value"] and got["ood"] == row["ood"]
        assert got["top_positive"]["name"] == row["top_positive"]["name"] in TINY_WORDS[:2]
        assert got["top_negative"]["name"] == row["top_negative"]["name"]


def test_bad_uploads_get_4xx_and_the_server_keeps_serving(server, tmp_path):
    url = f"{server['url']}/score"
    good = gather_paths([server["root"] / "id"])[:1]
    image = Path(good[0]).read_bytes()
    bad = {
        "not an image": (422, {"files": ("notes.txt", b"hello, not an image", "text/plain")},
                         "notes.txt: not a readable image"),
        "truncated": (422, {"files": ("cut.png", image[: len(image) // 2], "image/png")},
                      "cut.png: not a readable image"),
        "too large": (413, {"files": ("big.png", png_bytes(300), "image/png")},
                      "larger than the limit of 52,428 bytes"),
        "too many pixels": (413, {"files": ("wide.png", png_bytes(120), "image/png")},
                            "wide.png: 120x120 = 14,400 pixels, above the limit of 10,000 "
                            "pixels per image (the service's --max-pixels)"),
        # A bomb: more pixels than Pillow opens at all, in a few bytes.
        "bomb": (413, {"files": ("bomb.png", png_header(20000, 20000), "image/png")},
                 "bomb.png: 400,000,000 pixels, above the limit of 10,000 pixels "
                 "per image (the service's --max-pixels)"),
        "wrong field": (422, {"image": ("a.png", image, "image/png")},
                        "fields named 'files'"),
        "empty file": (422, {"files": ("empty.png", b"", "image/png")}, "empty.png"),
    }  # fmt: skip
    for what, (status, files, message) in bad.items():
        r = requests.post(url, files=files)
        assert r.status_code == status, (what, r.text)
        assert message in r.json()["detail"], (what, r.json())
        assert "object at 0x" not in r.json()["detail"], (what, r.json())
        assert "encode.max_image_pixels" not in r.json()["detail"], (what, r.json())
    r = requests.post(url, files=upload(good * 5))
    assert r.status_code == 413 and "more than 4 images" in r.json()["detail"]
    r = requests.post(url, data={"files": "a.png"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = requests.post(url, files={"files": (None, "just text")})
    assert r.status_code == 422
    assert server["proc"].poll() is None
    r = requests.post(url, files=upload(good))
    assert r.status_code == 200 and len(r.json()["results"]) == 1


def test_concurrent_clients_are_batched_without_errors(server):
    paths = gather_paths([server["root"] / "id", server["root"] / "ood"])
    requests_per_client, clients = 25, 8

    def client(k):
        errors, session = [], requests.Session()
        for i in range(requests_per_client):
            batch = [paths[(k * 7 + i + j) % len(paths)] for j in range(1 + i % 2)]
            r = session.post(f"{server['url']}/score", files=upload(batch), timeout=60)
            if r.status_code != 200 or len(r.json()["results"]) != len(batch):
                errors.append((r.status_code, r.text[:200]))
        return errors

    before = requests.get(f"{server['url']}/info").json()["served"]
    with ThreadPoolExecutor(clients) as pool:
        errors = [e for result in pool.map(client, range(clients)) for e in result]
    assert errors == []
    after = requests.get(f"{server['url']}/info").json()["served"]
    assert after["requests"] - before["requests"] == clients * requests_per_client
    images = after["images"] - before["images"]
    assert images == clients * (13 * 1 + 12 * 2)
    # Concurrent requests share model calls.
    assert after["model_calls"] - before["model_calls"] < clients * requests_per_client


def read_response(s: socket.socket) -> bytes:
    """One HTTP response with a Content-Length, read whole from a socket."""

    def more() -> bytes:
        data = s.recv(65536)
        if not data:
            raise AssertionError("the server closed the connection before answering in full")
        return data

    data = b""
    while b"\r\n\r\n" not in data:
        data += more()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += more()
    return head + b"\r\n\r\n" + body


def test_a_chunked_upload_is_refused_at_the_size_limit_while_streaming(server):
    """No Content-Length: the body is counted as it arrives, not read in full first."""
    port = int(server["url"].rsplit(":", 1)[1])
    boundary = "clustermineboundary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            'filename="huge.png"\r\nContent-Type: image/png\r\n\r\n').encode()  # fmt: skip
    block = b"\0" * 65536
    sent, answered = 0, False
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            (f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
             f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode()
            + b"%x\r\n%s\r\n" % (len(part), part)
        )  # fmt: skip
        try:
            while sent < 120 * 2**20:
                if select.select([s], [], [], 0)[0]:
                    answered = True
                    break
                s.sendall(b"%x\r\n%s\r\n" % (len(block), block))
                sent += len(block)
            if not answered:  # finish the request and take the answer
                end = f"\r\n--{boundary}--\r\n".encode()
                s.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(end), end))
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_response(s)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"larger than" in answer
    # The limit is 4 x 0.05 MB + 1 MiB; what was sent beyond it sat in socket buffers.
    assert sent < 16 * 2**20, f"the server read {sent:,} bytes before answering"
    assert requests.get(f"{server['url']}/health").status_code == 200


def test_a_client_that_disconnects_mid_request_leaves_one_log_line(server):
    log = server["root"] / "server.log"
    before = len(log.read_text())
    port = int(server["url"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                  b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n--xyz\r\n"
                  b'Content-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
                  + b"\0" * 1000)  # fmt: skip
        time.sleep(0.3)
    deadline = time.monotonic() + 20
    while True:
        new = log.read_text()[before:]
        if "disconnected" in new or "Traceback" in new or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # anything logged after the line
    new = log.read_text()[before:]
    assert "Traceback" not in new, new
    lines = [line for line in new.splitlines() if "disconnected" in line]
    assert len(lines) == 1 and "/score" in lines[0], new
    assert requests.get(f"{server['url']}/health").status_code == 200


def test_large_jpegs_are_decoded_at_reduced_size(server):
    """A JPEG far larger than the model's input is decoded at 1/2 to 1/8 of its size (never
    below twice the input): it costs the service a fraction of the CPU."""
    jpeg = jpeg_bytes(2048)
    assert open_source(jpeg).size == (2048, 2048)
    assert open_source(jpeg, draft=(64, 64)).size == (256, 256)
    assert open_source(png_bytes(200), draft=(64, 64)).size == (200, 200)  # PNG: full size
    det = clustermine.load_detector(server["bundle"], device="cpu")
    assert det.draft_size == (64, 64)  # twice the tiny model's 32-pixel input
    with serving(det, Limits()) as url:
        r = requests.post(f"{url}/score", files={"files": ("big.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200, r.text
    want = det.predict([open_source(jpeg, draft=det.draft_size)]).scores[0]
    assert r.json()["results"][0]["score"] == pytest.approx(want, rel=1e-6)


def test_an_image_the_model_cannot_embed_is_an_error_naming_it(server, tmp_path):
    det = clustermine.load_detector(server["bundle"], checkpoint=nan_checkpoint(tmp_path / "n.pt"),
                                    device="cpu")  # fmt: skip
    paths = gather_paths([server["root"] / "id" / "dog"])[:2]
    with serving(det, Limits()) as url:
        r = requests.post(f"{url}/score", files=upload(paths))
        assert r.status_code == 500, r.text
        detail = r.json()["detail"]
        assert Path(paths[0]).name in detail and "NaN or infinite" in detail
        assert requests.get(f"{url}/health").json() == {"status": "ok"}
