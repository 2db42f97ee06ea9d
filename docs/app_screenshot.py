"""Take the README's picture of ``semcorr app`` (docs/app.png): the real page in headless Chromium, with
the weight-free baseline, the bundled motorcycle images and a few parts clicked.

    python docs/app_screenshot.py [OUT.png]     # needs Debian's chromium and chromium-driver, and selenium
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from semcorr.app import AppSettings, create_server
from semcorr.demo import DEMO_POINTS

WIDTH = 1000  # pixels of the saved picture


def main(out: Path) -> None:
    server = create_server("baseline", settings=AppSettings(port=0), log=lambda line: None).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,930",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(server.url)
        status = lambda: driver.find_element(By.ID, "status")  # noqa: E731
        WebDriverWait(driver, 60).until(lambda _: "features ready" in status().text)
        image = driver.find_element(By.ID, "image-a")
        width, height, natural_w, natural_h = driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height, arguments[0].naturalWidth, "
            "arguments[0].naturalHeight];", image)
        for count, (x, y) in enumerate(DEMO_POINTS[:4], start=1):
            driver.execute_script("arguments[0].removeAttribute('data-latency-ms')", status())
            ActionChains(driver).move_to_element_with_offset(image, x * width / natural_w - width / 2,
                                                             y * height / natural_h - height / 2).click().perform()
            WebDriverWait(driver, 60).until(lambda _: status().get_attribute("data-latency-ms") is not None)
        picture = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    finally:
        driver.quit()
        server.close()
    picture = picture.resize((WIDTH, round(picture.height * WIDTH / picture.width)), Image.Resampling.LANCZOS)
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("app.png"))
