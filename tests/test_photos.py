"""Phone photos: decoded no larger than the conversion needs, and never on the loop worker's event loop."""

import json
import socket
import threading
import urllib.request

import numpy as np
import pytest

from fmnist.preprocess import WORK_SIDE, decode_image, to_model_pixels
from tests.conftest import running_server
from tests.images import encode, photo, png


def _garment() -> np.ndarray:
    a = np.zeros((28, 28), np.uint8)
    a[4:24, 9:19] = 200  # a light block: a dress-ish silhouette on black, the dataset's polarity
    a[4:8, 5:23] = 180
    return a


def test_big_jpeg_decodes_at_a_reduced_scale_with_the_same_result():
    data = photo(_garment(), (4000, 3000))
    small = decode_image(data, work_side=WORK_SIDE)
    assert WORK_SIDE <= max(small.size) < 2 * WORK_SIDE and small.size[0] / small.size[1] == pytest.approx(4 / 3, 0.01)
    whole = decode_image(data)
    assert whole.size == (4000, 3000)
    a, b = to_model_pixels(small, "auto").astype(int), to_model_pixels(whole, "auto").astype(int)
    assert np.abs(a - b).mean() < 4 and np.abs(a - b).max() < 80  # the same 28x28 up to resampling


def test_formats_without_a_reduced_decode_and_small_pictures_are_whole():
    from PIL import Image

    big_png = encode(Image.new("RGB", (1200, 900), (240, 240, 240)), "PNG")
    assert decode_image(big_png, work_side=WORK_SIDE).size == (1200, 900)
    small_jpeg = encode(Image.new("RGB", (2 * WORK_SIDE - 1, 300), (240, 240, 240)), "JPEG")
    assert decode_image(small_jpeg, work_side=WORK_SIDE).size == (2 * WORK_SIDE - 1, 300)


def _metric(url: str, name: str, **labels) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1:line.index("}")].split(",")))
            if got == want:
                total += float(line.rsplit(" ", 1)[1])
    return total


def _post(port: int, body_parts: list, request_id: str) -> bytes:
    boundary = "b0undary"
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{n}\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
                    for n, data in body_parts) + f"--{boundary}--\r\n".encode()
    return (f"POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-ID: {request_id}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def _read_responses(sock: socket.socket, n: int) -> list:
    f = sock.makefile("rb")
    out = []
    for _ in range(n):
        status = int(f.readline().split()[1])
        headers = {}
        while (line := f.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        out.append((status, headers, json.loads(f.read(int(headers["content-length"])))))
    return out


@pytest.mark.integration
def test_photos_go_to_the_heavy_pool_in_order_and_answer_as_in_process(tmp_path, real_data):
    """Through a real Gunicorn loop worker: 28x28 pictures are decoded on the loop, a photo in the heavy
    pool (fmnist_pictures_total says where); pipelined [photo, 28x28, photo] on one connection come back
    in request order; the photo's answer is what the library gives for the same bytes."""
    from fmnist.inference.predictor import Predictor
    from fmnist.registry import resolve
    from tests.conftest import SHIPPED

    x = real_data.test_images[:3]
    shots = [photo(x[0], (1600, 1200)), photo(x[2], (3000, 2000))]  # 1.9 MP (medium), 6 MP (large)
    with running_server(tmp_path, "--worker", "loop", workers=1) as srv:
        with socket.create_connection(("127.0.0.1", srv["port"]), timeout=20) as s:
            s.sendall(_post(srv["port"], [("a.jpg", shots[0])], "first") + _post(srv["port"], [("b.png", png(x[1]))], "second")
                      + _post(srv["port"], [("c.jpg", shots[1])], "third"))
            answers = _read_responses(s, 3)
        assert [(st, h["x-request-id"]) for st, h, _ in answers] == [(200, "first"), (200, "second"), (200, "third")]
        pred = Predictor(resolve(str(SHIPPED)))
        for data, (_, _, body) in zip(shots, (answers[0], answers[2])):
            seen = to_model_pixels(decode_image(data, work_side=WORK_SIDE), "auto")
            expected = pred.to_predictions(pred.predict_batch(pred.normalize(seen[None])))[0]
            assert body["label"] == expected.label and body["confidence"] == pytest.approx(expected.confidence, abs=1e-6)
        assert _metric(srv["url"], "fmnist_pictures_total", size="medium", where="heavy_pool") == 1
        assert _metric(srv["url"], "fmnist_pictures_total", size="large", where="heavy_pool") == 1
        assert _metric(srv["url"], "fmnist_pictures_total", size="28x28", where="loop") == 1
        assert _metric(srv["url"], "fmnist_pictures_total", size="medium", where="loop") == 0
        assert _metric(srv["url"], "fmnist_picture_decode_seconds_count", size="large") == 1


@pytest.mark.integration
def test_heavy_pool_full_answers_503_with_retry_after(tmp_path, real_data):
    """One heavy thread and room for one: photos sent together beyond that are refused at once (503 and
    Retry-After), the others answered; small pictures keep being answered meanwhile."""
    shot = photo(real_data.test_images[0], (3000, 2000))
    env = {"FMNIST_HEAVY_THREADS": "1", "FMNIST_HEAVY_QUEUE": "1"}
    with running_server(tmp_path, "--worker", "loop", workers=1, extra_env=env) as srv:
        socks = [socket.create_connection(("127.0.0.1", srv["port"]), timeout=30) for _ in range(6)]
        reqs = [_post(srv["port"], [("p.jpg", shot)], f"photo-{i}") for i in range(6)]
        go = threading.Barrier(6)

        def send(i):
            go.wait()
            socks[i].sendall(reqs[i])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with socket.create_connection(("127.0.0.1", srv["port"]), timeout=10) as s:
            s.sendall(_post(srv["port"], [("x.png", png(real_data.test_images[1]))], "small"))
            assert _read_responses(s, 1)[0][0] == 200
        answers = [_read_responses(s, 1)[0] for s in socks]
        for s in socks:
            s.close()
        statuses = sorted(st for st, _, _ in answers)
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
        for st, headers, body in answers:
            if st == 503:
                assert headers["retry-after"] == "1" and body["error"]["code"] == "server_busy"
                assert "large pictures" in body["error"]["message"]
