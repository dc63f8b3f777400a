"""Fixtures of the UI tests: one filled store, one app server and one headless Chromium per module.

Screenshots land in ``artifacts/screenshots/`` at the repository root (git-ignored).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import ui_pipeline as pipeline

from mltrace_otel.settings import Settings

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMEDRIVER = "/usr/bin/chromedriver"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def ui_settings(tmp_path_factory: pytest.TempPathFactory, store_dir: Path) -> Settings:
    """Settings of one module: its own database in the session's engine directory."""
    home = tmp_path_factory.mktemp("ui")
    return Settings.from_env({}, mltrace_dir=home,
                             store_url=f"chdb://{store_dir.as_posix()}?database=ui_{next(_numbers)}",
                             store_wait_s=10.0)


@pytest.fixture(scope="module")
def ui_store(ui_settings: Settings) -> Iterator[object]:
    """An open store holding the test pipeline, logged by the SDK; dropped after the module."""
    from mltrace_otel.store import open_store

    pipeline.log(ui_settings)
    s = open_store(ui_settings)  # drains the spool the SDK wrote
    try:
        yield s
    finally:
        try:
            s.command("drop_test_database", f"DROP DATABASE IF EXISTS `{s.database}`")
        finally:
            s.close()


@pytest.fixture(scope="module")
def filled(ui_store: object) -> pipeline.Filled:
    """Run ids of the pipeline in ``ui_store``, by role."""
    return pipeline.ids(ui_store)


@pytest.fixture(scope="module")
def ui_url(ui_settings: Settings, ui_store: object, filled: pipeline.Filled) -> Iterator[str]:
    """Base URL of the app served from a thread on a free port."""
    from mltrace_otel.dashboards.app import create_app, make_server

    server = make_server(create_app(ui_settings, ui_store), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium driven by selenium (skipped when chromium/chromedriver are missing)."""
    if not Path(CHROMEDRIVER).exists() or not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("needs the Debian packages chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mltrace-chrome-")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,1300", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def screenshot() -> object:
    """``screenshot(driver, name)`` saves the page as artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(driver: object, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        driver.save_screenshot(str(path))
        return path

    return take
