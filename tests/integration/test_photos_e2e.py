"""Phone photos: decoded no larger than the conversion needs, and never on the loop worker's event loop."""
import socket
import threading

import pytest

from fmnist.images.preprocess import WORK_SIDE, decode_image, to_model_pixels
from tests.conftest import running_server
from tests.httpprobe import metric, predict_request, read_responses
from tests.images import photo, png


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
            s.sendall(predict_request(srv["port"], [("a.jpg", shots[0])], "first")
                      + predict_request(srv["port"], [("b.png", png(x[1]))], "second")
                      + predict_request(srv["port"], [("c.jpg", shots[1])], "third"))
            answers = read_responses(s, 3)
        assert [(st, h["x-request-id"]) for st, h, _ in answers] == [(200, "first"), (200, "second"), (200, "third")]
        pred = Predictor(resolve(str(SHIPPED)))
        for data, (_, _, body) in zip(shots, (answers[0], answers[2])):
            seen = to_model_pixels(decode_image(data, work_side=WORK_SIDE), "auto")
            expected = pred.to_predictions(pred.predict_batch(pred.normalize(seen[None])))[0]
            assert body["label"] == expected.label and body["confidence"] == pytest.approx(expected.confidence, abs=1e-6)
        assert metric(srv["url"], "fmnist_pictures_total", size="medium", where="heavy_pool") == 1
        assert metric(srv["url"], "fmnist_pictures_total", size="large", where="heavy_pool") == 1
        assert metric(srv["url"], "fmnist_pictures_total", size="28x28", where="loop") == 1
        assert metric(srv["url"], "fmnist_pictures_total", size="medium", where="loop") == 0
        assert metric(srv["url"], "fmnist_picture_decode_seconds_count", size="large") == 1


@pytest.mark.integration
def test_heavy_pool_full_answers_503_with_retry_after(tmp_path, real_data):
    """One heavy thread and room for one: photos sent together beyond that are refused at once (503 and
    Retry-After), the others answered; small pictures keep being answered meanwhile."""
    shot = photo(real_data.test_images[0], (3000, 2000))
    env = {"FMNIST_HEAVY_THREADS": "1", "FMNIST_HEAVY_QUEUE": "1"}
    with running_server(tmp_path, "--worker", "loop", workers=1, extra_env=env) as srv:
        socks = [socket.create_connection(("127.0.0.1", srv["port"]), timeout=30) for _ in range(6)]
        reqs = [predict_request(srv["port"], [("p.jpg", shot)], f"photo-{i}") for i in range(6)]
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
            s.sendall(predict_request(srv["port"], [("x.png", png(real_data.test_images[1]))], "small"))
            assert read_responses(s, 1)[0][0] == 200
        answers = [read_responses(s, 1)[0] for s in socks]
        for s in socks:
            s.close()
        statuses = sorted(st for st, _, _ in answers)
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
        for st, headers, body in answers:
            if st == 503:
                assert headers["retry-after"] == "1" and body["error"]["code"] == "server_busy"
                assert "large pictures" in body["error"]["message"]
