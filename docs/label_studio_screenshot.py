"""Take the picture of docs/label-studio.md (docs/label-studio.png): a real Label Studio's labelling page
showing a task pre-labelled by ``semcorr label-studio`` (the weight-free baseline), in headless Chromium.

One task (a crop of scikit-image's ``chelsea``) is annotated with three keypoints and a box; the
backend is connected, asked for the predictions of another crop, and that task is opened.

    python docs/label_studio_screenshot.py [OUT.png]
    # needs Label Studio (.ci/label-studio-venv, or SEMCORR_LABEL_STUDIO), Debian's chromium and
    # chromium-driver, and selenium; run from the repository with semcorr importable
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from labelstudio_server import PASSWORD, USERNAME, LabelStudioServer, find_label_studio, make_template  # noqa: E402
from test_labelstudio import CONFIG, EXAMPLES, LABELS, TARGETS, crop_png, face_box, keypoint  # noqa: E402

from semcorr.labelstudio import LabelStudioSettings, create_backend_server  # noqa: E402

WIDTH = 1000  # pixels of the saved picture


def main(out: Path) -> None:
    executable, why = find_label_studio()
    if executable is None:
        sys.exit(why)
    folder = Path(tempfile.mkdtemp(prefix="semcorr-ls-screenshot-"))
    ls = LabelStudioServer(executable, folder / "data").start(make_template(executable))
    backend = create_backend_server("baseline", settings=LabelStudioSettings(port=0, url=ls.url, api_key=ls.token),
                                    log=print).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        project = ls.api("POST", "/api/projects", {"title": "Cat keypoints", "label_config": CONFIG})["id"]
        ls.api("POST", f"/api/projects/{project}/import",
               files={"file0": ("cat_example.png", crop_png(EXAMPLES[0])), "file1": ("cat.png", crop_png(TARGETS[0]))})
        tasks = {t["data"]["image"].rsplit("-", 1)[1]: t["id"]
                 for t in ls.api("GET", f"/api/tasks?project={project}")["tasks"]}
        ls.api("POST", f"/api/tasks/{tasks['cat_example.png']}/annotations",
               {"result": [keypoint(label, EXAMPLES[0], f"k{k}") for k, label in enumerate(LABELS)]
                + [face_box(EXAMPLES[0])]})
        ls.api("POST", "/api/ml", {"url": backend.url, "project": project, "title": "semcorr"})
        ls.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
               {"selectedItems": {"all": False, "included": [tasks["cat.png"]]}})
        driver.get(ls.url + "/user/login/")
        driver.find_element(By.NAME, "email").send_keys(USERNAME)
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        WebDriverWait(driver, 60).until(lambda d: "/user/login" not in d.current_url)
        driver.get(f"{ls.url}/projects/{project}/data?task={tasks['cat.png']}")
        WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "canvas"))
        time.sleep(3)  # the image and the keypoints are drawn after the canvas appears
        picture = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    finally:
        driver.quit()
        backend.close()
        ls.stop()
    picture = picture.resize((WIDTH, round(picture.height * WIDTH / picture.width)), Image.Resampling.LANCZOS)
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("label-studio.png"))
