"""Helpers for the real-browser tests and fixtures (tests/app/conftest.py): start `lmscope app` the way the
README says, find chromium, where screenshots go. Imported by name (tests/ is on sys.path, see
tests/conftest.py), like tiny_models."""
from __future__ import annotations

import os
import sys
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}  # screenshots stay this size (not full-page)


def browser_missing() -> str | None:
    """Why the real-browser tests cannot run here (None: they can)."""
    if not Path(CHROMIUM).exists():
        return f"needs Debian chromium at {CHROMIUM} (make browser-deps)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs playwright (make setup)"
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need_browser() -> None:
    """Skip a browser test where chromium or playwright is missing; under CI=true fail instead, loudly: a
    CI run whose browser tests all skipped would look green while testing none of them."""
    why = browser_missing()
    if why is None:
        return
    if in_ci():
        pytest.fail(f"CI=true but the browser tests cannot run: {why}", pytrace=False)
    pytest.skip(why)


from app.launch import serving  # noqa: E402  (one server starter for tests and bench)


def shipped_models(*names: str) -> Path:
    """assets/models, the shipped demo models, for a test module's `demo_models`; a skip naming those of
    `names` it lacks (`make demo-models` builds them)."""
    from model.registry import ASSETS_MODELS

    missing = [m for m in names if not (ASSETS_MODELS / m / "config.json").is_file()]
    if missing:
        pytest.skip(f"needs the shipped demo models in {ASSETS_MODELS} (make demo-models); missing: {', '.join(missing)}")
    return ASSETS_MODELS


@contextmanager
def lmscope_app(env: dict[str, str], log: Path | None = None):
    """Start `lmscope app` on a free port with `env` added; yields its base URL; stops its PID."""
    argv = lambda port: [sys.executable, "-m", "app.cli", "app", "--host", "127.0.0.1", "--port", str(port)]  # noqa: E731
    with serving(argv, env, cwd=ROOT, log=log, timeout=60) as (url, _):
        yield url


def screenshot_dir() -> Path:
    """LMSCOPE_SCREENSHOT_DIR, else `screenshots/` at the repo root (git-ignored)."""
    d = Path(os.environ.get("LMSCOPE_SCREENSHOT_DIR") or ROOT / "screenshots")
    if not d.is_absolute():
        d = ROOT / d
    d.mkdir(parents=True, exist_ok=True)
    return d


def open_page(page, server: str, path: str, **params) -> None:
    page.goto(f"{server}/{path}?{urllib.parse.urlencode(params)}" if params else f"{server}/{path}")


def page_url(page, contains: str, timeout: float = 30.0) -> str:
    """The address bar once it contains `contains` (playwright's page.url misses history.replaceState)."""
    end = time.monotonic() + timeout
    url = page.evaluate("location.href")
    while contains not in url and time.monotonic() < end:
        time.sleep(0.1)
        url = page.evaluate("location.href")
    return url


def choose(page, combobox, option: str) -> None:
    """Pick `option` in a Streamlit select box. A click on a box that already has the focus (after a rerun
    redrew the page under it) leaves the list closed; the arrow key opens it either way."""
    from playwright.sync_api import expect

    combobox.click()
    if combobox.get_attribute("aria-expanded") != "true":
        combobox.press("ArrowDown")
    expect(combobox).to_have_attribute("aria-expanded", "true")
    page.get_by_role("option", name=option, exact=True).click()
