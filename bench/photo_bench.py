"""Phone photos against the server: what one costs, at which working size, and what it does to everyone else.

    python bench/photo_bench.py stages                 # per-stage times for 12 MP JPEG, PNG and WebP photos
    python bench/photo_bench.py sizes [--per-style 300] # picture-benchmark accuracy at each working size
    python bench/photo_bench.py mixed [--before DIR]   # wrk's 28x28 traffic, quiet vs beside 2 photo clients
    python bench/photo_bench.py small [--before DIR]   # requests/s on 28x28 and small pictures alone

The photos are made here, from nothing reserved for independent checks: a Fashion-MNIST test garment,
coloured and shaded by `fmnist.pictures.styles` at 2,000 px, laid with a soft shadow on a procedural table (wood
grain, a lighting gradient), with sensor noise, 4000x3000, saved as a phone would (JPEG quality 90, and the
same as PNG and WebP). `sizes` takes the picture benchmark (`fmnist.pictures.styles`, the same styles and seed as
`fmnist evaluate --pictures`), enlarges each picture to a phone photo's long side (3,000-4,000 px, bicubic),
saves it as JPEG quality 92, and converts it back at each working size, as the server would.
`mixed --before DIR` also runs the server from another checkout (e.g. `git worktree add /tmp/before HEAD~1`)
in the same run. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def phone_photo(index: int = 0, size=(4000, 3000), seed: int = 7):
    """A 12-megapixel photo of a test-set garment on a table (PIL RGB)."""
    from PIL import Image, ImageFilter

    from fmnist import data
    from fmnist.pictures import styles

    ds = data.load(allow_download=False)
    rng = np.random.default_rng(seed + index)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grain = np.sin(xx / 37.0 + 3 * np.sin(yy / 211.0)) * 0.5 + 0.5  # wood grain along x
    light = 0.75 + 0.25 * (1 - yy / h) * (1 - 0.3 * xx / w)  # a window at the top left
    wood = np.array([150, 105, 70], np.float32) * (0.8 + 0.2 * grain[..., None]) * light[..., None]
    table = Image.fromarray(np.clip(wood, 0, 255).astype(np.uint8), "RGB")
    layer = styles._layer(ds.test_images[index], "product", rng, 2000)
    x0, y0 = (w - 2000) // 2 + int(rng.integers(-300, 300)), (h - 2000) // 2 + int(rng.integers(-200, 200))
    shadow = layer.getchannel("A").filter(ImageFilter.GaussianBlur(40)).point(lambda v: int(v * 0.4))
    sa = Image.new("L", size, 0)
    sa.paste(shadow, (x0 + 40, y0 + 60))
    table = Image.composite(Image.new("RGB", size, (20, 15, 10)), table, sa)
    table.paste(layer, (x0, y0), layer)
    noisy = np.asarray(table, np.float32) + rng.normal(0, 3, (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"), int(ds.test_labels[index])


def encode(im, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def timed(fn, n: int) -> float:
    """Median seconds of n calls."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def cmd_stages(a) -> None:
    from fmnist.images import preprocess as pp

    photo, label = phone_photo()
    files = {"JPEG": encode(photo, "JPEG", quality=90), "PNG": encode(photo, "PNG", compress_level=6),
             "WebP": encode(photo, "WEBP", quality=90)}
    print(f"12 MP photo of a test-set {label=} garment; median of {a.repeat} runs, one thread\n")
    print("| format | bytes | decode whole | decode for work side | convert (work side) | total now | total before |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for fmt, data in files.items():
        full = timed(lambda d=data: pp.decode_image(d, work_side=None), a.repeat)
        small = timed(lambda d=data: pp.decode_image(d, work_side=pp.WORK_SIDE), a.repeat)
        im = pp.decode_image(data, work_side=pp.WORK_SIDE)
        conv = timed(lambda i=im: pp.to_model_pixels(i.copy(), "auto"), a.repeat)
        total = timed(lambda d=data: pp.to_model_pixels(pp.decode_image(d, work_side=pp.WORK_SIDE), "auto"), a.repeat)
        before = timed(lambda d=data: pp.to_model_pixels(pp.decode_image(d), "auto", work_side=1024), a.repeat)
        print(f"| {fmt} | {len(data):,} | {full * 1e3:.1f} ms | {small * 1e3:.1f} ms ({im.size[0]}x{im.size[1]}) | "
              f"{conv * 1e3:.1f} ms | {total * 1e3:.1f} ms | {before * 1e3:.1f} ms |")


def cmd_sizes(a) -> None:
    from PIL import Image

    from fmnist import data
    from fmnist.images import preprocess as pp
    from fmnist.inference.predictor import Predictor
    from fmnist.pictures import styles
    from fmnist.registry import resolve

    ds = data.load(allow_download=False)
    pred = Predictor(resolve(a.model))
    sides = [int(s) for s in a.sides.split(",")]
    cols = sides + ["rendered"]
    rng = np.random.default_rng(0)
    print(f"{a.model}: picture-benchmark pictures enlarged to a phone photo's size (3,000-4,000 px), JPEG q92, "
          f"{a.per_style} per style\n")
    print("| style | " + " | ".join(f"{s} px" for s in sides) + " | as rendered |")
    print("|---|" + "---:|" * len(cols))
    totals = {c: [] for c in cols}
    for style in styles.STYLE_NAMES:
        seen = {c: [] for c in cols}
        y = ds.test_labels[:a.per_style]
        for i in range(a.per_style):
            pic = styles.render(ds.test_images[i], int(y[i]), style,
                                  styles.image_rng(styles.BENCH_SEED, i, style))
            seen["rendered"].append(pp.to_model_pixels(pic, "auto"))
            k = int(rng.integers(3000, 4001)) / max(pic.size)
            big = pic.convert("RGB").resize((round(pic.size[0] * k), round(pic.size[1] * k)), Image.Resampling.BICUBIC)
            jpeg = encode(big, "JPEG", quality=92)
            for s in sides:
                seen[s].append(pp.to_model_pixels(pp.decode_image(jpeg, work_side=s), "auto", work_side=s))
        acc = {c: float((pred.predict_batch(pred.normalize(np.stack(seen[c]))).argmax(1) == y).mean()) for c in cols}
        print(f"| {style} | " + " | ".join(f"{100 * acc[c]:.1f} %" for c in cols) + " |", flush=True)
        for c in cols:
            if style != "cluttered":
                totals[c].append(acc[c])
    print("| **mean, all but cluttered** | " + " | ".join(f"**{100 * np.mean(totals[c]):.1f} %**" for c in cols) + " |")


def _post_photo(conn: http.client.HTTPConnection, body: bytes, boundary: str) -> int:
    conn.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    r = conn.getresponse()
    r.read()
    return r.status


def photo_clients(port: int, jpeg: bytes, n: int, halt: threading.Event, out: list) -> list:
    boundary = "photobenchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + jpeg + f"\r\n--{boundary}--\r\n".encode()

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not halt.is_set():
            t0 = time.perf_counter()
            try:
                status = _post_photo(conn, body, boundary)
            except OSError:
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            out.append((status, time.perf_counter() - t0))
        conn.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def mixed_run(name: str, cmd: list, port: int, env: dict, script: Path, jpeg: bytes, duration: int) -> dict:
    import serve_bench as sb

    proc, _ = sb.start(cmd, port, env)
    try:
        url = f"http://127.0.0.1:{port}"
        sb.run_wrk(url, script, 4, 2)
        quiet = sb.run_wrk(url, script, 16, duration)
        halt, photos = threading.Event(), []
        threads = photo_clients(port, jpeg, 2, halt, photos)
        time.sleep(1.0)
        try:
            busy = sb.run_wrk(url, script, 16, duration)
        finally:
            halt.set()
            for t in threads:
                t.join(timeout=30)
    finally:
        sb.stop(proc)
    ok = sorted(s for status, s in photos if status == 200)
    return {"name": name, "quiet": quiet, "busy": busy, "photos": len(photos), "photo_ok": len(ok),
            "photo_p50_ms": 1e3 * ok[len(ok) // 2] if ok else None,
            "photo_p99_ms": 1e3 * ok[min(len(ok) - 1, int(len(ok) * 0.99))] if ok else None}


def server_command(tree: Path, name: str, model: str, tmp: Path) -> tuple:
    """(port, command, environment) of `fmnist serve` (2 workers) from the checkout `tree`'s own src/."""
    import os

    import serve_bench as sb

    port = sb.free_port()
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "FMNIST_MODELS": str(REPO / "models"),
           "FMNIST_PREDICTION_LOG": str(tmp / f"{name}.sqlite")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "fmnist.cli", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "2"]
    return port, cmd, env


def cmd_mixed(a) -> None:
    import tempfile

    import serve_bench as sb

    photo, _ = phone_photo()
    jpeg = encode(photo, "JPEG", quality=90)
    tmp = Path(tempfile.mkdtemp(prefix="photo-bench-"))
    script = sb.wrk_script(sb.test_png(), tmp / "png.lua")
    trees = ([("before", Path(a.before))] if a.before else []) + [("now", REPO)]
    rows = []
    for name, tree in trees:
        port, cmd, env = server_command(tree, name, a.model, tmp)
        rows.append(mixed_run(name, cmd, port, env, script, jpeg, a.duration))
    print(f"2 workers; wrk -c 16 posting a 28x28 PNG for {a.duration} s, quiet then beside 2 clients each "
          f"posting a 12 MP JPEG ({len(jpeg):,} bytes) back to back\n")
    print("| server | quiet req/s | quiet p99 | with photos req/s | with photos p99 | kept | p99 ratio | "
          "photos answered | photo p50 | photo p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        q, b = r["quiet"], r["busy"]
        print(f"| {r['name']} | {q['rps']:,.0f} | {q['p99_ms']:.1f} ms | {b['rps']:,.0f} | {b['p99_ms']:.1f} ms | "
              f"{100 * b['rps'] / q['rps']:.0f} % | {b['p99_ms'] / q['p99_ms']:.2f}x | "
              f"{r['photo_ok']}/{r['photos']} | {r['photo_p50_ms'] or 0:.0f} ms | {r['photo_p99_ms'] or 0:.0f} ms |")
        if q["errors"] or b["errors"]:
            print(f"  ({r['name']}: wrk errors quiet {q['errors']}, with photos {b['errors']})")


def cmd_small(a) -> None:
    """Throughput on small pictures alone (no photos), before and now: the fast path must keep it."""
    import tempfile

    import serve_bench as sb

    from fmnist import data
    from fmnist.pictures import styles

    ds = data.load(allow_download=False)
    tmp = Path(tempfile.mkdtemp(prefix="photo-bench-"))
    pic = styles.render(ds.test_images[0], int(ds.test_labels[0]), "product", styles.image_rng(1, 0)).convert("RGB")
    bodies = {"28x28 PNG": sb.test_png()}
    for side in (160, 240, 480):
        k = side / max(pic.size)
        bodies[f"{side} px JPEG"] = encode(pic.resize((round(pic.size[0] * k), round(pic.size[1] * k))), "JPEG", quality=85)
    scripts = {name: sb.wrk_script(body, tmp / f"{i}.lua") for i, (name, body) in enumerate(bodies.items())}
    trees = ([("before", Path(a.before))] if a.before else []) + [("now", REPO)]
    print(f"2 workers; wrk -c 16 for {a.duration} s per picture size, requests/s (p99)\n")
    print("| server | " + " | ".join(bodies) + " |")
    print("|---|" + "---:|" * len(bodies))
    for name, tree in trees:
        port, cmd, env = server_command(tree, name, a.model, tmp)
        proc, _ = sb.start(cmd, port, env)
        try:
            url = f"http://127.0.0.1:{port}"
            cells = []
            for script in scripts.values():
                sb.run_wrk(url, script, 4, 2)
                r = sb.run_wrk(url, script, 16, a.duration)
                cells.append(f"{r['rps']:,.0f} ({r['p99_ms']:.1f} ms)" + (f" {r['errors']} errors" if r["errors"] else ""))
        finally:
            sb.stop(proc)
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stages")
    s.add_argument("--repeat", type=int, default=9)
    s = sub.add_parser("sizes")
    s.add_argument("--model", default="smallcnn")
    s.add_argument("--per-style", type=int, default=200)
    s.add_argument("--sides", default="96,128,192,256,384,1024")
    s = sub.add_parser("mixed")
    s.add_argument("--model", default="smallcnn")
    s.add_argument("--duration", type=int, default=10)
    s.add_argument("--before", help="another checkout whose src/ serves as 'before', in the same run")
    s = sub.add_parser("small")
    s.add_argument("--model", default="smallcnn")
    s.add_argument("--duration", type=int, default=8)
    s.add_argument("--before", help="another checkout whose src/ serves as 'before', in the same run")
    a = p.parse_args()
    {"stages": cmd_stages, "sizes": cmd_sizes, "mixed": cmd_mixed, "small": cmd_small}[a.cmd](a)


if __name__ == "__main__":
    main()
