"""The page in headless Chromium, against the server started without Paddle: a CamVid image
through two models (overlay, latency, agreement), a bad upload, a short video.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser-deps``) and selenium
(``requirements-dev.txt``). ``PSE_SCREENSHOT=docs/images/serve.jpg`` keeps the page's
screenshot there (by default it goes to the test's temporary folder); ``PSE_WEB_MODELS``
serves other exports (see ``conftest.py``).
"""

from __future__ import annotations

import os
import re
import shutil

import cv2
import numpy as np
import pytest
from helpers import CAMVID, needs_camvid

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT_ENV = "PSE_SCREENSHOT"
INSTALL_HINT = "run `make browser-deps` (apt-get install chromium chromium-driver)"
# The README's screenshot shows the page at this size (the height grows to the page's).
WINDOW = (1280, 900)

pytest.importorskip("selenium", reason="needs selenium: pip install -r requirements-dev.txt")
pytestmark = [
    needs_camvid,
    pytest.mark.skipif(not os.path.isfile(CHROMIUM), reason=f"no {CHROMIUM}: {INSTALL_HINT}"),
    pytest.mark.skipif(not os.path.isfile(CHROMEDRIVER), reason=f"no chromedriver: {INSTALL_HINT}"),
]

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: Chromium's sandbox refuses to run as root, as in containers.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def shot(browser, element_id: str) -> np.ndarray:
    """The element as shown on the page (BGR)."""
    png = browser.find_element(By.ID, element_id).screenshot_as_png
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def number(browser, selector: str) -> float:
    text = browser.find_element(By.CSS_SELECTOR, selector).text
    assert re.fullmatch(r"[0-9]+\.[0-9]+", text), text
    return float(text)


def set_opacity(browser, percent: int) -> None:
    browser.execute_script(
        "const s = document.getElementById('opacity');"
        "s.value = arguments[0]; s.dispatchEvent(new Event('input'));",
        percent,
    )


def camvid_clip(path: str, count: int = 4) -> str:
    """A short MJPEG AVI of consecutive CamVid val frames (2 fps)."""
    frames = sorted(os.listdir(CAMVID / "images" / "val"))[:count]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 2, (480, 360))
    for name in frames:
        writer.write(cv2.imread(str(CAMVID / "images" / "val" / name)))
    writer.release()
    return path


def test_the_page_segments_an_image_and_a_video(browser, server, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(server)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    entries = browser.find_elements(By.CSS_SELECTOR, "#model option")
    Select(browser.find_element(By.ID, "model2")).select_by_value(entries[1].get_attribute("value"))

    # A file that is not an image: a message on the page.
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    browser.find_element(By.ID, "image-file").send_keys(str(notes))
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert browser.find_element(By.ID, "error").text.startswith("notes.png: not an image")

    image = CAMVID / "images" / "val" / sorted(os.listdir(CAMVID / "images" / "val"))[0]
    browser.find_element(By.ID, "image-file").send_keys(str(image))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#latency-1 .value"))
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert number(browser, "#latency-0 .value") > 0 and number(browser, "#latency-1 .value") > 0
    agreement = browser.find_element(By.CSS_SELECTOR, "#agreement .value").text
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}%", agreement) and float(agreement[:-1]) <= 100
    assert browser.find_elements(By.CSS_SELECTOR, ".legend li")

    # The overlay differs from the input at 50% opacity, and equals it at 0%.
    shown = shot(browser, "input-0")
    assert shown.shape[0] > 100 and mean_diff(shot(browser, "overlay-0"), shown) > 10
    set_opacity(browser, 0)
    assert mean_diff(shot(browser, "overlay-0"), shown) < 2
    set_opacity(browser, 50)

    clip = camvid_clip(str(tmp_path / "camvid_clip.avi"))
    browser.find_element(By.ID, "video-file").send_keys(clip)
    video = wait.until(lambda d: d.find_elements(By.ID, "video-overlay"))[0]
    # In view, as for a user who just uploaded it: browsers pause muted videos off screen.
    browser.execute_script("arguments[0].scrollIntoView()", video)
    played = "return arguments[0].error === null && arguments[0].played.length > 0;"
    wait.until(lambda d: d.execute_script(played, video))
    assert number(browser, "#video-latency .value") > 0
    assert "4 frames of camvid_clip.avi" in browser.find_element(By.ID, "video-latency").text

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WINDOW[0], max(WINDOW[1], height))
    # Paused: a still frame for the screenshot.
    browser.execute_script("arguments[0].pause()", video)
    screenshot = os.environ.get(SCREENSHOT_ENV) or str(tmp_path / "serve.png")
    os.makedirs(os.path.dirname(os.path.abspath(screenshot)), exist_ok=True)
    page = cv2.imdecode(np.frombuffer(browser.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
    assert cv2.imwrite(screenshot, page, [cv2.IMWRITE_JPEG_QUALITY, 85])  # .png or .jpg
