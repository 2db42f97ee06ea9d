"""``semcorr app`` in a real browser: Debian's Chromium, headless, driven by selenium through Debian's
chromium-driver (no browser is downloaded). One server (baseline) and one browser for the module;
each test loads the page afresh. Skipped, saying why, where no Chromium is installed (.ci/run
installs it)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import SHIFT, running_app, shifted_pair
from PIL import Image

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402  (after the importorskip above)
from selenium.webdriver.chrome.service import Service  # noqa: E402  (after the importorskip above)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402  (after the importorskip above)
from selenium.webdriver.common.by import By  # noqa: E402  (after the importorskip above)
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402  (after the importorskip above)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 60  # seconds; a loaded 2-core machine is slow to start a browser


@pytest.fixture(scope="module")
def server():
    with running_app("baseline", max_upload_mb=1.0) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip(
            "no Chromium and chromedriver on this machine: `apt-get install chromium chromium-driver` "
            "(what .ci/run does) to run the browser tests"
        )
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--disable-gpu",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver, downloads
    driver.quit()


@pytest.fixture
def page(server, browser):
    """The page, loaded afresh, its example images ready."""
    driver, downloads = browser
    for old in downloads.iterdir():
        old.unlink()
    driver.get(server.url)
    wait_for(driver, lambda: "features ready" in text(driver, "status"))
    return driver, downloads


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return shifted_pair(tmp_path_factory.mktemp("images"))


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def wait_for(driver, condition, timeout: float = WAIT):
    """Wait for ``condition()`` (tables redrawn meanwhile are read again); on timeout, fail with the
    page's error box and status."""
    try:
        return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda _: condition()
        )
    except TimeoutException:
        pytest.fail(f"page did not get there: status {text(driver, 'status')!r}, error {text(driver, 'error')!r}")


def upload(driver, side: str, path: Path) -> None:
    driver.find_element(By.ID, f"upload-{side}").send_keys(str(path))


def use_pair(driver, images) -> None:
    upload(driver, "a", images[0])
    wait_for(driver, lambda: "cat_a.png" in text(driver, "name-a") and "features ready" in text(driver, "status"))
    upload(driver, "b", images[1])
    wait_for(driver, lambda: "cat_b.png" in text(driver, "name-b") and "features ready" in text(driver, "status"))


def click_a(driver, x: float, y: float) -> None:
    """Click image A at original pixel (x, y) (selenium offsets are from the element's centre)."""
    image = driver.find_element(By.ID, "image-a")
    box = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height, "
        "arguments[0].naturalWidth, arguments[0].naturalHeight];",
        image,
    )
    width, height, natural_w, natural_h = box
    ActionChains(driver).move_to_element_with_offset(
        image, x * width / natural_w - width / 2, y * height / natural_h - height / 2
    ).click().perform()


def rows(driver) -> list[dict]:
    """The table's rows: index, source and target (original pixels) once matched."""
    found = []
    for row in driver.find_elements(By.CSS_SELECTOR, "#points tbody tr"):
        data = {key: row.get_attribute(f"data-{key}") for key in ("source-x", "source-y", "target-x", "target-y")}
        found.append(
            {
                "source": [float(data["source-x"]), float(data["source-y"])] if data["source-x"] else None,
                "target": [float(data["target-x"]), float(data["target-y"])] if data["target-x"] else None,
            }
        )
    return found


def click_and_wait(driver, x: float, y: float, count: int) -> float:
    """Click A, wait until ``count`` points are matched and the heatmap is drawn; the page's latency (ms)."""
    driver.execute_script("document.getElementById('status').removeAttribute('data-latency-ms')")
    click_a(driver, x, y)
    wait_for(
        driver,
        lambda: (
            driver.find_element(By.ID, "status").get_attribute("data-latency-ms") is not None
            and len(rows(driver)) == count
            and all(r["target"] for r in rows(driver))
        ),
    )
    return float(driver.find_element(By.ID, "status").get_attribute("data-latency-ms"))


def heatmap_shown(driver) -> bool:
    return driver.execute_script(
        "const h = document.getElementById('heatmap'); return !h.hidden && h.complete && "
        "h.naturalWidth > 0 && h.src.startsWith('data:image/png');"
    )


def test_click_shows_heatmap_and_the_shifted_match_and_downloads_both(page, images):
    driver, downloads = page
    use_pair(driver, images)
    width, height = Image.open(images[1]).size
    click_and_wait(driver, 100, 80, count=1)
    assert heatmap_shown(driver)
    first = rows(driver)[0]
    assert first["source"] == pytest.approx([100, 80], abs=1.0)  # where the click landed
    cell = (width / 31, height / 31)  # one cell of the baseline's 31x31 grid, in B's pixels
    for axis in (0, 1):
        assert abs(first["target"][axis] - first["source"][axis] - SHIFT[axis]) <= cell[axis]

    click_and_wait(driver, 180, 120, count=2)
    second = rows(driver)[1]
    assert heatmap_shown(driver) and second["source"] == pytest.approx([180, 120], abs=1.0)
    for axis in (0, 1):
        assert abs(second["target"][axis] - second["source"][axis] - SHIFT[axis]) <= cell[axis]
    markers = driver.find_elements(By.CSS_SELECTOR, "#marks-b circle")
    assert len(markers) == 3  # two matches, the selected one ringed

    driver.find_element(By.ID, "download").click()
    target = downloads / "matches.json"
    wait_for(driver, target.exists, timeout=30)
    result = json.loads(target.read_text())
    assert [m["source"] for m in result["matches"]] == [first["source"], second["source"]]
    assert [m["target"] for m in result["matches"]] == [first["target"], second["target"]]
    assert result["model"] == "baseline" and result["image_a"] == {
        "name": "cat_a.png",
        "width": width,
        "height": height,
    }
    assert set(result) == {"matches", "model", "random_weights", "image_a", "image_b", "settings"}


def test_points_can_be_removed(page):
    driver, _ = page
    for count, (x, y) in enumerate([(205, 318), (598, 375), (537, 155)], start=1):
        click_and_wait(driver, x, y, count=count)
    kept = [r["source"] for r in rows(driver)]
    driver.find_elements(By.CSS_SELECTOR, "#points button.remove")[0].click()
    wait_for(driver, lambda: [r["source"] for r in rows(driver)] == kept[1:])
    driver.find_element(By.ID, "clear").click()
    wait_for(driver, lambda: not rows(driver))
    assert driver.find_element(By.ID, "download").get_attribute("disabled") is not None
    assert not driver.find_element(By.ID, "heatmap").is_displayed()


def test_pose_alignment_toggle_rematches(page):
    driver, _ = page
    click_and_wait(driver, 205, 318, count=1)
    driver.find_element(By.ID, "pose-align").click()
    wait_for(driver, lambda: "matched" in text(driver, "status"))
    assert len(rows(driver)) == 1 and heatmap_shown(driver)


def test_oversized_upload_gets_a_clear_message(page, tmp_path):
    driver, _ = page
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path)  # about 1.9 MB, over the 1 MB limit
    upload(driver, "b", path)
    wait_for(driver, lambda: driver.find_element(By.ID, "error").is_displayed())
    size = path.stat().st_size / 1e6
    assert text(driver, "error") == (
        f"noise.png: {size:.1f} MB is over this page's upload limit of 1 MB; use a "
        "smaller file (or start the page with a higher --max-upload-mb)"
    )
    assert "motorcycle_right.png" in text(driver, "name-b")  # image B unchanged


def test_server_errors_are_shown_on_the_page(page, tmp_path):
    driver, _ = page
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    upload(driver, "a", path)
    wait_for(driver, lambda: driver.find_element(By.ID, "error").is_displayed())
    assert text(driver, "error") == "notes.png: not an image file (Pillow cannot identify it)"
    time.sleep(0.2)
    assert "Traceback" not in driver.page_source


def test_random_weights_are_said_and_models_switch(browser):
    """A model with random weights (a tiny DINOv2) says so on the page; the baseline is offered too."""
    from helpers import tiny_backbone

    from semcorr.features import DinoV2Config, DinoV2Extractor

    driver, _ = browser
    extractor = DinoV2Extractor(
        DinoV2Config(input_size=56), backbone=tiny_backbone(), random_weights=True, name="tiny-dinov2"
    )
    with running_app(extractor) as server:
        driver.get(server.url)
        wait_for(driver, lambda: "features ready" in text(driver, "status"))
        offered = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "#model option")]
        assert offered == ["tiny-dinov2 (random weights)", "baseline"]
        click_and_wait(driver, 205, 318, count=1)
        assert "random weights: the matches carry no meaning" in text(driver, "status") and heatmap_shown(driver)
        driver.find_element(By.CSS_SELECTOR, "#model option[value='baseline']").click()
        wait_for(driver, lambda: "matched" in text(driver, "status") and "random" not in text(driver, "status"))
        assert len(rows(driver)) == 1


def test_transfer_tab_carries_the_clicked_points_to_uploaded_images(page, images):
    driver, downloads = page
    use_pair(driver, images)
    click_and_wait(driver, 100, 80, count=1)
    click_and_wait(driver, 180, 120, count=2)
    sources = [r["source"] for r in rows(driver)]
    driver.find_element(By.CSS_SELECTOR, 'button[data-tab="tab-transfer"]').click()
    assert "2 point(s)" in text(driver, "transfer-source")
    driver.find_element(By.ID, "transfer-upload").send_keys("\n".join(str(p) for p in images))
    wait_for(
        driver,
        lambda: (
            len(driver.find_elements(By.CSS_SELECTOR, "#transfer-targets figure")) == 2
            and driver.find_element(By.ID, "transfer-run").get_attribute("disabled") is None
        ),
    )
    driver.find_element(By.ID, "min-confidence").clear()
    driver.find_element(By.ID, "min-confidence").send_keys("0")
    driver.find_element(By.ID, "transfer-run").click()
    wait_for(driver, lambda: "done in" in text(driver, "transfer-status"))
    marks = driver.find_elements(By.CSS_SELECTOR, "#transfer-targets figure svg circle")
    assert len(marks) == 4  # two points in each of the two images
    driver.find_element(By.ID, "transfer-download").click()
    target = downloads / "labels.json"
    wait_for(driver, target.exists, timeout=30)
    labels = json.loads(target.read_text())
    width, height = Image.open(images[1]).size
    shifted = labels["annotations"][[i["file_name"] for i in labels["images"]].index("cat_b.png")]["keypoints"]
    for k, (x, y) in enumerate(sources):
        assert (
            abs(shifted[3 * k] - x - SHIFT[0]) <= width / 31 and abs(shifted[3 * k + 1] - y - SHIFT[1]) <= height / 31
        )
