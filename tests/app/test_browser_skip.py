"""The browser tests skip where chromium or playwright is missing, except under CI=true, where they fail
loudly (a CI run that skipped every browser test would look green); no browser needed to check that."""
from __future__ import annotations

import pytest

import browser_helpers


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception),
                                         ("1", pytest.fail.Exception), ("false", pytest.skip.Exception)])
def test_missing_chromium_skips_outside_ci_and_fails_under_ci(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setattr(browser_helpers, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no-chromium"):
        browser_helpers.need_browser()


def test_present_chromium_and_playwright_let_the_tests_run(monkeypatch, tmp_path):
    pytest.importorskip("playwright")
    fake = tmp_path / "chromium"
    fake.write_text("")
    monkeypatch.setattr(browser_helpers, "CHROMIUM", str(fake))
    monkeypatch.setenv("CI", "true")
    assert browser_helpers.browser_missing() is None
    browser_helpers.need_browser()  # neither skips nor fails
