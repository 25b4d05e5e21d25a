"""Headless Chromium for the search page's tests and benchmarks/bench_page.py: Debian's `chromium` and
`chromium-driver` driven by selenium, on a fresh profile, kept off every network but loopback."""
from __future__ import annotations

import io
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

INSTALL = ("bash scripts/setup.sh installs them (on Debian: apt-get install chromium chromium-driver, and "
           "pip install -e '.[dev]' for selenium)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         # without these Chromium tries to reach Google's servers, which a closed network refuses
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


class MissingBrowser(RuntimeError):
    pass


@contextmanager
def chromium(width: int = 1280, height: int = 800):
    """A headless Chromium (selenium WebDriver) whose console is recorded; MissingBrowser says how to install."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise MissingBrowser(f"selenium is not installed: {INSTALL}") from None
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        raise MissingBrowser(f"Chromium or its driver is not installed: {INSTALL}")
    profile = tempfile.mkdtemp(prefix="vmr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        # an explicit driver path: selenium then never tries to download one
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            viewport(driver, width, height)
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def viewport(driver, width: int, height: int) -> None:
    """Lay the page out exactly `width` CSS pixels wide (a phone's when narrow)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                  "deviceScaleFactor": 1, "mobile": width < 600})


def console_errors(driver) -> list[str]:
    """SEVERE console entries since the last call (failed requests, uncaught errors, console.error)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def save_small_png(driver, path: Path, colors: int = 128) -> int:
    """A screenshot of the viewport as a palette PNG (a fraction of the size of the browser's); its bytes."""
    from PIL import Image

    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image.quantize(colors=colors).save(path, optimize=True)
    return path.stat().st_size
