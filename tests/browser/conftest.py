"""Headless Debian chromium driven by Selenium (Debian's chromedriver), against a stack of the four services."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.conftest import Stack, running_stack
from tests.support import ROOT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# Screenshots and downloads that a developer may want to look at: git-ignored.
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", ROOT / "tests" / "browser" / "artifacts"))
# Small, so the "too large" case needs only a small file; the test clip stays far below it.
UPLOAD_LIMIT_MB = 1


@pytest.fixture(scope="module")
def web_stack(mysql_account, tmp_path_factory) -> Iterator[Stack]:
    """The four services for one module of browser tests, the gateway's upload limit set low."""
    with running_stack(mysql_account, tmp_path_factory.mktemp("work"), MAX_UPLOAD_MB=str(UPLOAD_LIMIT_MB)) as stack:
        yield stack


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path):
    """One headless chromium per module; every test starts from a blank tab with empty session storage."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)}; `scripts/infra.sh packages` (make venv) installs "
                    "Debian's chromium and chromium-driver", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI, where chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--lang=en-US",
        # Nothing but 127.0.0.1: every other host name fails to resolve, and no background traffic.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-pings",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, web_stack: Stack):
    """The browser on the gateway's page, logged out (a new session storage for the origin)."""
    browser.get(f"{web_stack.url}/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{web_stack.url}/")
    yield browser
    browser.get_log("browser")  # drop this test's console lines
