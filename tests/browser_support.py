"""A real browser for the workbench's tests: Debian's headless Chromium driven by Playwright.

``playwright install`` cannot download browsers here, so Playwright launches ``/usr/bin/chromium``
(installed with apt-get as root when missing, else the test fails saying so: never skipped). Each
test gets a fresh browser context (no cookies); :func:`shot` saves a full-page screenshot into
:data:`SCREENSHOTS`, which the suite prints at its end (tests/conftest.py) so a person can look at
every page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: Where the screenshots go: ``$SUBMARINE_SCREENSHOTS``, else ``<repository>/.screenshots`` (ignored by git).
SCREENSHOTS = Path(
    os.environ.get("SUBMARINE_SCREENSHOTS") or Path(__file__).resolve().parent.parent / ".screenshots"
)
_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt-get when missing (root only)."""
    found = CHROMIUM if CHROMIUM.exists() else (Path(p) if (p := shutil.which("chromium")) else None)
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(
            "/usr/bin/chromium is missing and this is not root: apt-get install chromium first"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for a test module (Playwright's sync API).

    Per module, not per session: while Playwright's sync API is open its event loop counts as
    running in the main thread, so every later test in the same worker that runs a loop of its
    own (the in-process broker's ``run_until_complete``) would fail with "Cannot run the event
    loop while another loop is running"."""
    from playwright.sync_api import sync_playwright

    path = ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(path), headless=True, args=_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A page in a fresh context (no cookies), 1280x800, that fails the test on a script error."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert errors == [], f"script errors on the page: {errors}"


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot of ``page`` as ``<SCREENSHOTS>/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / (re.sub(r"[^\w.-]+", "-", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, base_url: str, token: str, next_path: str = "/ui/") -> None:
    """Sign in through the sign-in page, as a person would, then land on ``next_path``."""
    page.goto(f"{base_url}/login?next={next_path}")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}{next_path}*")
