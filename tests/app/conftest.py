"""Real-browser fixtures shared by the browser tests (Debian chromium + playwright, fully offline).

The app is started the way the README says, `python -m app.cli app --host 127.0.0.1 --port P` (what the
`lmscope app` console script runs): it execs Streamlit, so the PID held here is Streamlit's own and is the
one stopped. Every request the page makes that is not to 127.0.0.1 is aborted and recorded; each test ends
by asserting there were none and that no Streamlit exception box is on the page.

A test module picks its models by overriding `demo_models` (a folder, used as LMSCOPE_DEMO_MODELS) or
`app_env` (extra environment, e.g. LMSCOPE_MODEL_ROOTS). Helpers live in tests/browser_helpers.py.

For the AppTest page tests (no browser): `env` points the app at the module's `demo` folder; helpers live in
tests/app_helpers.py.
"""
from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from browser_helpers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, lmscope_app, need_browser


@pytest.fixture(scope="module")
def demo_models(tiny_models) -> Path:
    """The folder used as LMSCOPE_DEMO_MODELS (a module may override this fixture)."""
    return next(iter(tiny_models.values())).parent


@pytest.fixture(scope="module")
def app_env() -> dict[str, str]:
    """Extra environment for the app (a module may override this fixture)."""
    return {}


@pytest.fixture(scope="module")
def server(demo_models, app_env, tmp_path_factory):
    """`lmscope app` on the demo models with an empty runs folder; yields the base URL."""
    need_browser()
    tmp = tmp_path_factory.mktemp("app")
    env = {"LMSCOPE_DEMO_MODELS": str(demo_models), "LMSCOPE_RUNS": str(tmp / "runs"), **app_env}
    with lmscope_app(env, log=tmp / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page: requests not to 127.0.0.1 are aborted and listed in `page.outside`; alerts go to
    `page.dialogs`. After the test: nothing was attempted outside and no exception box is shown."""
    pg = browser.new_page(viewport=VIEWPORT)
    outside: list[str] = []
    dialogs: list[str] = []

    def route(r):
        if urllib.parse.urlparse(r.request.url).hostname == "127.0.0.1":
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.outside, pg.dialogs = outside, dialogs
    yield pg
    try:
        assert pg.locator("[data-testid=stException]").count() == 0, pg.locator("[data-testid=stException]").first.inner_text()
        assert outside == [], outside
    finally:
        pg.close()


@pytest.fixture
def env(demo, tmp_path, monkeypatch):
    """AppTest: point the app at the module's `demo` folder and an empty runs folder; forget other tests'
    cached model lists and loads."""
    from app import common

    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(demo))
    monkeypatch.setenv("LMSCOPE_RUNS", str(tmp_path / "runs"))
    common.listed_models.clear()
    common.load_cached.clear()
    yield tmp_path
    common.listed_models.clear()
    common.load_cached.clear()
