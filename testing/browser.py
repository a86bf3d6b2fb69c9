"""Headless Chromium for browser tests: Debian's `chromium` and `chromium-driver` (`make
chromium` installs them), driven over WebDriver by Selenium. Nothing is downloaded: both
paths are given, so Selenium Manager is never asked for a browser or driver.

Every host but the test server is unreachable from the browser, so a page that needs the
internet (a CDN, web fonts) fails visibly; `requested_urls` lists what the page asked for.
"""

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

INSTALL_HINT = (
    "browser tests need Chromium and its WebDriver: `make chromium` "
    "(apt-get install chromium chromium-driver)"
)


def _executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"no {name} on PATH; {INSTALL_HINT}", pytrace=False)
    return path


@contextmanager
def chromium(*, width: int, height: int) -> Iterator[WebDriver]:
    """A fresh headless Chromium whose pages are `width` x `height` CSS pixels."""
    options = Options()
    options.binary_location = _executable("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        # The test server is on localhost; any other host name does not resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(_executable("chromedriver")), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: WebDriver) -> list[str]:
    """Every URL the page has sent a request to since the last call (Chromium's performance
    log); requests that the page's own Content-Security-Policy blocked never left."""
    sent: dict[str, str] = {}
    blocked: set[str] = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            sent[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason") == "csp":
            blocked.add(params["requestId"])
    return [url for request_id, url in sent.items() if request_id not in blocked]


def screenshot(driver: WebDriver, directory: Path, name: str) -> Path:
    """Save the page as `<name>.png`: in BROWSER_SCREENSHOT_DIR if set (to look at them),
    else in `directory` (the test's tmp_path)."""
    target = Path(os.environ.get("BROWSER_SCREENSHOT_DIR") or directory)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    return path
