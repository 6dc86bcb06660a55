"""The dashboard in a real headless browser: Debian's Chromium driven by selenium through chromedriver,
against a real server (gRPC and HTTP on 127.0.0.1) over a store made by real builds, training, a
fine-tune, an ensemble and an advisor run.

Screenshots of every page go to a temporary folder (its path is printed; set REUSE_SCREENSHOTS=DIR to
keep them there). Skipped, saying why, where Chromium or chromedriver is missing (`make test` installs
them when it runs as root: the Makefile's `browser` target).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_mlp

from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.service import Service
from reuse.serving.engine import ServingOptions

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)):
        pytest.skip(
            f"no {CHROMIUM} or {DRIVER}: `make browser` installs them (apt-get install chromium "
            "chromium-driver, as root)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    from selenium.webdriver.chrome.service import Service as DriverService

    profile = tempfile.mkdtemp(prefix="reuse-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("REUSE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = (rng.normal(size=(90, 8)) + y[:, None]).astype("float32")
    data = root / "train.npz"
    np.savez(data, x=x, y=y)
    service = Service(root / "store")
    service.register_model(make_mlp(), "base", description=f"the base {HOSTILE}", class_names=["a", "b", "c"])
    service.build("clf", "base", "hidden[12]", classes=3, seed=0, description="reuses hidden1-2")
    service.train_model("clf:1", str(data), options={"epochs": 8})
    service.finetune_model("clf:2", "hidden2", str(data), options={"epochs": 5})
    service.train_model("clf:2", str(data), options={"epochs": 3, "seed": 7})
    service.ensemble("ens", ["clf:3", "clf:4"])
    service.advise("base", str(data), depths="0..1", seeds=2, epochs=3, register="adv")
    service.upload_dataset([data.read_bytes()], "train", format="npz")  # what a job may read
    service.configure_serving(ServingOptions(runtime="keras"))
    server = start_in_thread(service, ServerConfig(port=0, http_port=0))
    yield {"service": service, "base": f"http://127.0.0.1:{server.http_port}", "data": str(data), "x": x}
    server.stop()


def visit(browser, url: str, shots: Path, name: str) -> None:
    browser.set_window_size(1400, 1000)
    browser.get(url)
    time.sleep(0.3)  # charts draw on load
    snap(browser, shots, name)


def snap(browser, shots: Path, name: str) -> None:
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(max(height + 40, 700), 6000))
    browser.save_screenshot(str(shots / f"{name}.png"))


def severe_logs(browser) -> list[dict]:
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def wait(browser, find, timeout: float = 60):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # a polling page replaces its rows: an element found just before that is stale, so look again
    return WebDriverWait(browser, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(find)


def test_model_list_renders_and_filters(browser, served, shots):
    from selenium.webdriver.common.by import By

    visit(browser, served["base"] + "/ui/", shots, "models")
    rows = browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")
    assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == ["adv", "base", "clf", "ens"]
    assert browser.title == "Models · reuse"  # the hostile description did not run
    assert "the base <img src=x" in rows[1].text
    box = browser.find_element(By.CSS_SELECTOR, "header .search input")
    box.send_keys("ENS")
    assert [r.is_displayed() for r in rows] == [False, False, False, True]
    box.submit()  # the form also works without script: the server filters
    wait(browser, lambda b: "1 of 4 models match" in b.find_element(By.ID, "model-count").text)
    assert severe_logs(browser) == []


def test_version_page_draws_its_curves_and_lineage_graph(browser, served, shots):
    from selenium.webdriver.common.by import By

    visit(browser, served["base"] + "/ui/models/clf/versions/3", shots, "version")
    canvas = browser.find_element(By.ID, "curves")
    assert canvas.get_attribute("data-drawn") == "true" and canvas.size["height"] > 100
    series = browser.execute_script(
        "const c = document.getElementById('curves').chart;"
        "return [c.data.labels.length, c.data.datasets.map(d => d.label)];"
    )
    assert (
        series[0] == 13 and "loss" in series[1] and "accuracy" in series[1]
    )  # 8 epochs of train + 5 of finetune
    # As the PNG plots: the loss axis from 0, accuracy from chance (1/3 for three classes; lower only if
    # a value falls below it) to 1.
    axes, accuracy = browser.execute_script(
        "const c = document.getElementById('curves').chart;"
        "return [[c.scales.y.min, c.scales.y1.min, c.scales.y1.max],"
        "        c.data.datasets.filter(d => d.label.endsWith('accuracy')).flatMap(d => d.data)];"
    )
    lowest = min([1 / 3] + [v for v in accuracy if v is not None])
    assert axes[0] == 0 and axes[1] == pytest.approx(lowest) and axes[2] == 1
    boxes = {
        g.get_attribute("data-ref")
        for g in browser.find_elements(By.CSS_SELECTOR, "#lineage-graph g.version")
    }
    assert boxes == {"base:1", "clf:1", "clf:2", "clf:3"}
    assert (
        len(browser.find_elements(By.CSS_SELECTOR, "#lineage-graph path.edge.layer")) == 6
    )  # 2 layers x 3 copies
    labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#lineage-graph text.edge-label")]
    assert sorted(labels) == ["build", "finetune", "train"]
    marks = {
        r.find_elements(By.TAG_NAME, "td")[1].text: r.find_elements(By.TAG_NAME, "td")[5].text
        for r in browser.find_elements(By.CSS_SELECTOR, "#layer-table tbody tr")
    }
    assert marks == {"hidden1": "❄ frozen", "hidden2": "unfrozen", "output": "trainable"}
    assert severe_logs(browser) == []


def test_try_it_returns_the_served_answer(browser, served, shots):
    from selenium.webdriver.common.by import By

    visit(browser, served["base"] + "/ui/models/clf/versions/3", shots, "try-before")
    browser.find_element(By.CSS_SELECTOR, "#try-panel summary").click()
    field = wait(browser, lambda b: b.find_element(By.ID, "try-input-features"))
    x = served["x"][:2]
    field.send_keys("\n".join(", ".join(f"{v:.6f}" for v in row) for row in x))
    browser.find_element(By.ID, "try-run").click()
    answer = json.loads(
        wait(browser, lambda b: b.find_element(By.ID, "try-raw")).get_attribute("textContent")
    )
    want = served["service"].infer("clf:3", x.round(6)).outputs[0]
    got = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(answer["outputs"][0]["shape"])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    top = browser.find_elements(By.CSS_SELECTOR, "#try-output-output tr")[1].text
    assert top.split()[1] == str(int(want[0].argmax()))
    snap(browser, shots, "try")
    # A wrong row: the server's 400, shown as it said it.
    field.clear()
    field.send_keys("1, 2, 3")
    browser.find_element(By.ID, "try-run").click()
    error = wait(browser, lambda b: b.find_element(By.ID, "try-error")).text
    assert error == "HTTP 400: input 'features': 3 values in data, expected 8 (shape [1, 8] of FP32)"
    assert severe_logs(browser) == [] or all("400" in e["message"] for e in severe_logs(browser))


def test_ensemble_and_advisor_pages(browser, served, shots):
    from selenium.webdriver.common.by import By

    visit(browser, served["base"] + "/ui/models/ens/versions/1", shots, "ensemble")
    labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#lineage-graph text.edge-label")]
    assert labels.count("ensemble") == 2 and "clf:3" in browser.find_element(By.ID, "summary").text
    visit(browser, served["base"] + "/ui/advice", shots, "advice")
    canvas = browser.find_element(By.CSS_SELECTOR, "canvas[data-chart=advice]")
    assert canvas.get_attribute("data-drawn") == "true"
    rows = browser.find_elements(By.CSS_SELECTOR, ".advice tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [
        "scratch",
        "reuse 1 frozen",
        "reuse 1 fine-tuned",
    ]
    assert severe_logs(browser) == []


def test_jobs_page_follows_a_running_job(browser, served, shots):
    from selenium.webdriver.common.by import By

    service = served["service"]
    job = service.start_train({"model": "clf:2", "data": "train", "epochs": 100000, "batch_size": 90})
    try:
        wait(
            browser,
            lambda b: (service.get_job(job.id).last_event or 0) and service.get_job(job.id).last_event.epoch,
        )
        visit(browser, served["base"] + "/ui/jobs", shots, "jobs")
        bar = browser.find_element(By.CSS_SELECTOR, f"#jobs-body tr[data-id='{job.id}'] progress")
        first = int(bar.get_attribute("value"))
        assert int(bar.get_attribute("max")) == 100000
        # the page polls: a later epoch appears without a reload
        wait(
            browser,
            lambda b: (
                int(
                    b.find_element(
                        By.CSS_SELECTOR, f"#jobs-body tr[data-id='{job.id}'] progress"
                    ).get_attribute("value")
                )
                > first
            ),
            timeout=30,
        )
    finally:
        service.cancel_job(job.id)
    assert severe_logs(browser) == []


def test_a_token_server_asks_for_it_in_the_browser(browser, served, shots):
    from selenium.webdriver.common.by import By

    with start_in_thread(served["service"], ServerConfig(port=0, http_port=0, token="open sesame")) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        visit(browser, base + "/ui/models/base", shots, "login")
        assert browser.current_url.startswith(base + "/ui/login?next=")
        browser.find_element(By.NAME, "token").send_keys("open sesame")
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()
        wait(browser, lambda b: b.current_url == base + "/ui/models/base")
        assert browser.find_element(By.TAG_NAME, "h1").text == "base"
        snap(browser, shots, "after-login")
