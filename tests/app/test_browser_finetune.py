"""The Fine-tune page in a real browser (Debian chromium + playwright, offline; fixtures in conftest.py),
on tiny random models: a short fine-tune (the built-in agreement task) and a short distillation run from
the page to the end as jobs of the server's queue; each result is then found on the Models page.

    pytest -m browser tests/app/test_browser_finetune.py    (skipped without /usr/bin/chromium or playwright)
"""
from __future__ import annotations

import re
import sys

import pytest

from browser_helpers import ROOT, need_browser, open_page

pytestmark = pytest.mark.browser
APP_START_S = 300  # a machine busy with training jobs starts Streamlit slowly


@pytest.fixture(scope="module")
def server(demo_models, tmp_path_factory):
    """`lmscope app` on the tiny models with an empty runs folder, as conftest's `server`, with a longer
    start-up wait: the jobs these tests run and the app share the CPU."""
    from app.launch import serving

    need_browser()
    tmp = tmp_path_factory.mktemp("app")
    env = {"LMSCOPE_DEMO_MODELS": str(demo_models), "LMSCOPE_RUNS": str(tmp / "runs")}
    argv = lambda port: [sys.executable, "-m", "app.cli", "app", "--host", "127.0.0.1", "--port", str(port)]  # noqa: E731
    with serving(argv, env, cwd=ROOT, log=tmp / "app.log", timeout=APP_START_S) as (url, _):
        yield url


def _expect_finished(page, timeout_s: float) -> str:
    """Wait for the finished job's message (failing at once on an error box); returns runs/<job>."""
    from playwright.sync_api import expect

    main = page.get_by_test_id("stMain")
    done = main.get_by_text(re.compile(r"Finished\. The model is listed as runs/"))
    failure = page.locator("[data-testid=stException], [data-testid=stAlertContentError]")
    expect(done.or_(failure).first).to_be_visible(timeout=timeout_s * 1000)
    assert failure.count() == 0, failure.first.inner_text()
    return re.search(r"(runs/\S+) in the model picker", done.inner_text()).group(1)


def _run_from_page(page, server, steps: str, **params) -> str:
    from playwright.sync_api import expect

    page.set_default_navigation_timeout(APP_START_S * 1000)
    open_page(page, server, "finetune", **params)
    main = page.get_by_test_id("stMain")
    box = main.get_by_label("Steps")
    expect(box).to_be_visible(timeout=60_000)
    box.fill(steps)
    box.press("Enter")
    start = page.get_by_role("button", name="Start", exact=True)
    expect(start).to_be_enabled(timeout=30_000)
    start.click()
    expect(main.get_by_text(re.compile(r"^Submitted "))).to_be_visible(timeout=30_000)
    return _expect_finished(page, timeout_s=300)


def _listed_on_models_page(page, server, name: str) -> None:
    from playwright.sync_api import expect

    open_page(page, server, "models", model=name)
    expect(page.get_by_test_id("stMain").get_by_role("heading", name=name)).to_be_visible(timeout=60_000)


def test_a_short_finetune_from_the_page_ends_in_models(page, server):
    from playwright.sync_api import expect

    name = _run_from_page(page, server, "4", ftmode="classify", model="demo/bert-pretraining", ftdata="built-in",
                          fttask="toy-agreement", fttext="the dogs near the cat run .")
    main = page.get_by_test_id("stMain")
    expect(main.locator(".js-plotly-plot .gtitle", has_text="confusion matrix")).to_be_visible(timeout=60_000)
    expect(main.locator(".js-plotly-plot .gtitle", has_text="How each head's attention changed")).to_be_visible(timeout=60_000)
    _listed_on_models_page(page, server, name)


def test_a_short_distillation_from_the_page_ends_in_models(page, server):
    from playwright.sync_api import expect

    name = _run_from_page(page, server, "4", ftmode="distill", model="demo/gpt2", ftdata="toyworld",
                          fttext="the dogs near the")
    main = page.get_by_test_id("stMain")
    expect(main.locator(".js-plotly-plot .gtitle", has_text="teacher: demo/gpt2")).to_be_visible(timeout=60_000)
    expect(main.locator(".js-plotly-plot .gtitle", has_text=f"student: {name}")).to_be_visible(timeout=60_000)
    _listed_on_models_page(page, server, name)
