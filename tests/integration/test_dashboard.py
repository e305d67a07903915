"""The dashboard in a real headless Chromium: loads without console errors, shows the server's numbers."""

import json
import os
import time
import urllib.request

import pytest

from tests.conftest import SHIPPED, program, running_server
from tests.images import png

pytestmark = pytest.mark.integration  # starts real processes

CHROMIUM, DRIVER = program("chromium"), program("chromedriver")


def _post(url, path, body: bytes, ctype: str) -> dict:
    req = urllib.request.Request(url + path, data=body, method="POST", headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1100"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


@pytest.fixture(scope="session")
def browser_works():
    """Headless Chromium started once: the browser tests skip with the reason where it cannot start."""
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (make test-deps installs them)")
    try:
        _browser().quit()
    except Exception as e:  # selenium's WebDriverException, a crashed or missing browser, ...
        pytest.skip(f"headless Chromium cannot start here: {str(e).strip().splitlines()[0][:300]}")


@pytest.mark.realdata
def test_dashboard_shows_server_numbers(tmp_path, real_data, browser_works):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with running_server(tmp_path, "--worker", "gthread", "--threads", "4") as srv:
        url = srv["url"]
        x, y = real_data.test_images[:200], real_data.test_labels[:200]
        for a, t in zip(x, y):
            boundary = "b0undary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"
                    .encode() + png(a) + f"\r\n--{boundary}--\r\n".encode())
            r = _post(url, "/predict", body, f"multipart/form-data; boundary={boundary}")
            _post(url, "/feedback", json.dumps({"request_id": r["request_id"], "label": int(t)}).encode(),
                  "application/json")
        time.sleep(0.2)
        with urllib.request.urlopen(url + "/monitoring") as resp:
            truth = json.loads(resp.read())

        driver = _browser()
        try:
            driver.get(url + "/dashboard")
            wait = WebDriverWait(driver, 20)
            wait.until(lambda d: f"smallcnn:{SHIPPED.name}" in d.find_element(By.ID, "model").text)
            # a second poll gives rates; send traffic in between so requests/s is a number
            for a in x[:40]:
                _post(url, "/predict", json.dumps({"pixels": a.tolist()}).encode(), "application/json")
            wait.until(lambda d: d.find_element(By.ID, "rps").text not in ("–", ""))
            acc_text = driver.find_element(By.ID, "accuracy").text
            assert f"{100 * truth['accuracy']['accuracy']:.1f} %" in acc_text and "n=200" in acc_text
            assert driver.find_element(By.ID, "drift-status").text.lower() == truth["drift"]["status"]
            assert driver.find_element(By.ID, "store-status").text.lower() == "sqlite"
            assert driver.find_element(By.ID, "window-replicas").text == "1"
            assert float(driver.find_element(By.ID, "rps").text) > 0
            assert driver.find_element(By.ID, "p99").text != "–"
            assert int(driver.find_element(By.ID, "window-n").text) >= 200
            bars = driver.find_elements(By.CSS_SELECTOR, "#class-chart rect")
            assert len(bars) == 20  # ten classes, live and reference
            assert len(driver.find_elements(By.CSS_SELECTOR, "#flag-chart rect")) == 4  # two flags, live and expected
            assert int(driver.find_element(By.ID, "flag-n").text) >= 200
            rows = driver.find_elements(By.CSS_SELECTOR, "#processes tbody tr")
            assert len(rows) == 3  # master + 2 workers
            # FMNIST_SCREENSHOT=docs/dashboard.png refreshes the picture kept in the docs
            driver.save_screenshot(os.environ.get("FMNIST_SCREENSHOT") or str(tmp_path / "dashboard.png"))
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors
        finally:
            driver.quit()


@pytest.mark.realdata
def test_dashboard_explains_a_picture_and_shows_unsure_inputs(tmp_path, real_data, browser_works):
    """The dashboard's two picture panels in Chromium: a real picture file uploaded to "Explain a picture"
    (the same label as /predict gives the file, three panels drawn), and the latest low-confidence inputs
    as the model saw them (store_images on)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fmnist.pictures import styles

    with running_server(tmp_path, extra_env={"FMNIST_STORE_IMAGES": "1"}) as srv:
        url = srv["url"]
        for a in real_data.test_images[:300]:
            _post(url, "/predict", json.dumps({"pixels": a.tolist()}).encode(), "application/json")
        with urllib.request.urlopen(url + "/monitoring/low-confidence", timeout=10) as resp:
            unsure = json.loads(resp.read())["items"]
        assert unsure  # a few of 300 test images are below 60 % confidence
        k = 1  # a pullover, rendered as a product shot and saved as a JPEG file, as a shop would
        picture = styles.render(real_data.test_images[k], int(real_data.test_labels[k]), "product",
                                  styles.image_rng(3, k))
        path = tmp_path / "pullover.jpg"
        picture.convert("RGB").save(path, "JPEG", quality=85)
        boundary = "b0undary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n\r\n"
                .encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode())
        truth = _post(url, "/predict", body, f"multipart/form-data; boundary={boundary}")

        driver = _browser()
        try:
            driver.get(url + "/dashboard")
            wait = WebDriverWait(driver, 20)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#low-confidence figure")) == len(unsure))
            loaded = driver.execute_script(
                "return [...document.querySelectorAll('#low-confidence img')].map(i => i.complete && i.naturalWidth)")
            assert loaded == [28] * len(unsure)
            first = driver.find_element(By.CSS_SELECTOR, "#low-confidence figcaption").text
            assert first.startswith(unsure[0]["predicted"].split("/")[0])
            driver.find_element(By.ID, "explain-file").send_keys(str(path))
            wait.until(lambda d: "%" in d.find_element(By.ID, "explain-label").text)
            assert driver.find_element(By.ID, "explain-label").text.startswith(truth["label"] + " (")
            wait.until(lambda d: d.execute_script(
                "return [...document.querySelectorAll('#explain-panels img')].every(i => i.complete && i.naturalWidth == 224)"
                " && document.querySelectorAll('#explain-panels img').length == 3"))
            driver.execute_script("document.getElementById('explain-file').scrollIntoView()")
            driver.save_screenshot(os.environ.get("FMNIST_SCREENSHOT_EXPLAIN") or str(tmp_path / "explain.png"))
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors
        finally:
            driver.quit()


def test_dashboard_asks_for_a_key_once_and_keeps_it_for_the_tab(tmp_path, browser_works):
    """With API keys the page loads (it holds no data), asks for a key, says why a key is refused, and with
    a monitor key shows the server's numbers, also after a reload of the tab."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fmnist.serving import auth

    keys = tmp_path / "keys.json"
    monitor, predict = auth.create(keys, "ops", ["monitor"]), auth.create(keys, "app", ["predict"])
    with running_server(tmp_path, "--api-keys", str(keys), workers=1) as srv:
        driver = _browser()
        try:
            driver.get(srv["url"] + "/dashboard")
            wait = WebDriverWait(driver, 20)
            wait.until(lambda d: d.find_element(By.ID, "key-form").is_displayed())
            assert "monitor" in driver.find_element(By.ID, "key-note").text
            assert driver.find_element(By.ID, "model").text == "loading…"  # nothing shown without a key

            def give(key):
                box = driver.find_element(By.ID, "key-input")
                box.send_keys(key)
                box.submit()

            give(predict)
            wait.until(lambda d: "lacks the monitor scope" in d.find_element(By.ID, "key-note").text)
            give(monitor)
            wait.until(lambda d: f"smallcnn:{SHIPPED.name}" in d.find_element(By.ID, "model").text)
            assert not driver.find_element(By.ID, "key-form").is_displayed()
            driver.refresh()  # the same tab: the key is remembered, not asked again
            wait.until(lambda d: f"smallcnn:{SHIPPED.name}" in d.find_element(By.ID, "model").text)
            assert not driver.find_element(By.ID, "key-form").is_displayed()
            assert driver.execute_script("return location.href").endswith("/dashboard")  # never in the URL
        finally:
            driver.quit()


@pytest.mark.realdata
def test_dashboard_shows_a_rollout_side_by_side(tmp_path, real_data, browser_works):
    """A shadow rollout of smallcnn:4 against smallcnn:5: the rollout panel shows both versions' evidence, each
    gate with its status, and the verdict."""
    import shutil

    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fmnist.rollout import plan as rollout_plan
    from tests.conftest import REPO

    registry = tmp_path / "models"
    for v in ("4", "5"):
        shutil.copytree(REPO / "models" / "smallcnn" / v, registry / "smallcnn" / v)
    rollout_plan.start("smallcnn", "4", "shadow", gates=rollout_plan.Gates(min_requests=100, min_seconds=3600),
                       root=registry)
    with running_server(tmp_path, "--model", "smallcnn", "--registry", str(registry), workers=1,
                        extra_env={"FMNIST_RELOAD_INTERVAL": "0.5"}) as srv:
        url = srv["url"]
        for a in real_data.test_images[:150]:
            _post(url, "/predict", json.dumps({"pixels": a.tolist()}).encode(), "application/json")
        driver = _browser()
        try:
            driver.get(url + "/dashboard")
            wait = WebDriverWait(driver, 20)
            wait.until(lambda d: d.find_element(By.ID, "rollout-panel").is_displayed())
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rollout-versions tbody tr")) == 2)
            title = driver.find_element(By.ID, "rollout-title").text
            assert title.startswith("smallcnn:4 shadow against production 5") and "running" in title
            wait.until(lambda d: "verdict: wait" in d.find_element(By.ID, "rollout-verdict").text)  # min_seconds

            def gates(d) -> dict:
                return {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[3].text
                        for r in d.find_elements(By.CSS_SELECTOR, "#rollout-gates tbody tr")}

            # The shadow's evidence reaches the store (and the panel's next refresh) after the answers: wait for
            # the gates to be decided (PENDING until 100 requests of both versions are in), then read them.
            try:
                WebDriverWait(driver, 30).until(lambda d: gates(d) and "PENDING" not in {v.upper() for v in gates(d).values()})
            except TimeoutException:
                raise AssertionError(f"gates still pending after 30 s: {gates(driver)}") from None
            decided = gates(driver)
            assert decided["disagreement"] == "PASS" and decided["class_psi"] == "PASS", decided
            driver.execute_script("document.getElementById('rollout-panel').scrollIntoView()")
            driver.save_screenshot(os.environ.get("FMNIST_ROLLOUT_SCREENSHOT") or str(tmp_path / "rollout.png"))
        finally:
            driver.quit()


def test_a_young_window_says_it_waits_and_latency_shows_at_once(tmp_path, browser_works):
    """With fewer predictions than the drift checks need, the drift badge says how many it has (not "ok"), and
    the latency and request-rate tiles have numbers from the first poll (issue 31)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with running_server(tmp_path, workers=1) as srv:
        url = srv["url"]
        for k in range(5):
            _post(url, "/predict", json.dumps({"pixels": [[k * 40] * 28] * 28}).encode(), "application/json")
        driver = _browser()
        try:
            driver.get(url + "/dashboard")
            WebDriverWait(driver, 20).until(lambda d: "smallcnn" in d.find_element(By.ID, "model").text)
            assert driver.find_element(By.ID, "drift-status").text.lower() == "waiting: 5 of 100 samples"
            assert {c.text.lower() for c in driver.find_elements(By.CSS_SELECTOR, "#checks tbody td:last-child")} == {"waiting"}
            assert driver.find_element(By.ID, "p99").text not in ("–", "")
            assert float(driver.find_element(By.ID, "rps").text) > 0
            driver.save_screenshot(str(tmp_path / "young.png"))
        finally:
            driver.quit()
