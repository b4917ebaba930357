"""The load test's students (bench.loadtest): each a browser context of its own in one Debian chromium driven
by playwright, opening pages, typing texts and clicking buttons, each action timed until the page shows what
only the new state can produce.

    stats = asyncio.run(drive("http://127.0.0.1:8501", models, sessions=20, minutes=3, seed=0))   # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import random
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field

from bench.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

THINK_S = (1.0, 3.0)  # a student reads the result before the next action
RUN_TIMEOUT_S = 240.0  # one script run; a slower answer counts as an error
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "the dogs near the cat run quickly, and the cat near the dogs sleeps.",
    "Attention heads look at other tokens in the sentence; some look at the previous token.",
    "A student types a sentence and sees how each tokenizer cuts it into pieces.",
    "Grüße aus Köln: naïve café résumé, 漢字 and emoji 😀 in one line.",
    "In 1969 the first humans walked on the moon, and millions watched it on television.",
    "The committee, after a long debate, finally decided to postpone the vote until the next meeting.",
    "she said that the results were surprising, but the data did not lie.",
]
MASKED = [
    "the dogs near the cat [MASK] quickly.",
    "The capital of France is [MASK].",
    "the [MASK] sleeps near the [MASK].",
    "A student [MASK] a sentence and sees how each tokenizer cuts it.",
    "the cat near the dogs [MASK] .",
]
# Every text fits the demo models' positions (GPT-2: 64, BERT: 48 tokens): a page keeps the session's text
# when the student moves on, and the Generation page refuses a prompt longer than the model can read.
PROMPTS = ["the dogs near the", "Once upon a time", "The quick brown fox", "the cat", "In the morning we"]

# The page's state once Streamlit is idle, nothing on it is stale, every visible chart is drawn and, with a
# `result` (a CSS selector), a result chart or an error is shown (else null): a fingerprint of what the server
# drew (chart data, HTML, alerts, text) that the next state must change, how many result charts it shows,
# its errors, warnings and title.
SETTLED = """([before, result]) => {
  const app = document.querySelector('[data-testid=stApp]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return null;
  if (document.querySelector('[data-stale=true]')) return null;
  const parts = [];
  for (const d of document.querySelectorAll('.js-plotly-plot')) {
    if (d.getClientRects().length && !(d.data && d.querySelector('.main-svg'))) return null;
    if (d.data) parts.push(JSON.stringify(d.data.map(t => [t.x, t.y])));
  }
  for (const e of document.querySelectorAll('[data-testid=stHtml], [data-testid=stAlert], [data-testid=stException], '
                                            + '[data-testid=stMarkdownContainer]')) parts.push(e.textContent);
  const fp = parts.join('\\n');
  if (fp === before) return null;
  const text = sel => [...document.querySelectorAll(sel)].map(e => e.textContent.slice(0, 200));
  const errors = text('[data-testid=stException], [data-testid=stAlertContentError]');
  const results = result ? [...document.querySelectorAll(result)].filter(d => d.data && d.querySelector('.main-svg')).length : 0;
  if (result && !results && !errors.length) return null;  // a page's first chart waits for plotly's code to load
  return {fp, results, errors, warnings: document.querySelectorAll('[data-testid=stAlertContentWarning]').length,
          title: (document.querySelector('h1') || {}).textContent || ''};
}"""
# "Generate with all three": the continuations shown, each an HTML block that starts with the prompt.
CONTINUATIONS = """(prompt) => [...document.querySelectorAll('[data-testid=stHtml]')]
  .filter(e => e.querySelector('b') && e.textContent.startsWith(prompt)).length"""
RESULT = {"attention": ".st-key-fig_attention-heatmap .js-plotly-plot",
          "masked_lm": "[class*=st-key-fig_masked-lm-] .js-plotly-plot",
          "generation": ".st-key-fig_sampling-stages .js-plotly-plot"}
POLL_MS = 50  # how often a waiting session looks at its page
STAY = 0.6  # after an action, the chance that a student tries another text on the same page and model
# action -> (page, kind of model, its texts, what is missing when its result chart is not drawn)
ACTIONS = {"attention": ("attention", "attention", TEXTS, "no heatmap"),
           "fill-mask": ("masked_lm", "mlm", MASKED, "no predictions"),
           "generation": ("generation", "causal", PROMPTS, "no distribution")}


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    warnings: int = 0
    outside: list[str] = field(default_factory=list)  # requests the pages sent to other hosts than 127.0.0.1
    opened: set[str] = field(default_factory=set)  # the models the sessions opened


class Session:
    """A student's browser tab: a browser context of its own (cookies, cache, Streamlit session) with one page.

    open(): the page's address with the model and the text in it; type(): a new text into the open page's
    text box; click(): a tab, then a button. Each waits until the page shows the new state, records its
    time under `label` and returns what the page shows (SETTLED); errors shown on the page are recorded."""

    def __init__(self, n: int, url: str, browser, models: dict[str, list[str]], stats: Stats, seed: int):
        self.n, self.url, self.browser, self.models, self.stats = n, url, browser, models, stats
        self.rng = random.Random(seed)
        self.context = self.page = None
        self.where: tuple[str, str] | None = None  # (page, model) shown
        self.text = ""

    async def start(self) -> None:
        self.context = await self.browser.new_context(viewport=VIEWPORT)
        self.context.on("request", self._count_outside)
        self.page = await self.context.new_page()

    def _count_outside(self, request) -> None:
        if urllib.parse.urlparse(request.url).hostname not in ("127.0.0.1", None):
            self.stats.outside.append(request.url)

    async def close(self) -> None:
        if self.context is not None:
            await self.context.close()

    async def run(self, deadline: float) -> None:
        """Actions until `deadline` (time.monotonic): a few texts on one page and model, then another."""
        try:
            await self.start()
            await asyncio.sleep(self.rng.uniform(0, 2))  # students do not all press Enter at once
            action = model = None
            while time.monotonic() < deadline:
                if action is None or self.rng.random() > STAY:
                    action = self.rng.choice(list(ACTIONS))
                    model = self.rng.choice(self.models[ACTIONS[action][1]])
                await self.act(action, model)
                await asyncio.sleep(self.rng.uniform(*THINK_S))
        except Exception as e:  # a page that never settled, a crashed page, a closed browser
            self.stats.errors.append(f"session {self.n}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        finally:
            await self.close()

    async def _settled(self, label: str | None, before: str | None, result: str | None, t0: float = 0.0) -> dict:
        handle = await self.page.wait_for_function(SETTLED, arg=[before, result], polling=POLL_MS,
                                                   timeout=RUN_TIMEOUT_S * 1000)
        shown = await handle.json_value()
        if label is not None:
            self.stats.latencies[label].append(time.perf_counter() - t0)
            self.stats.errors += [f"session {self.n} {label}: {e}" for e in shown["errors"]]
            self.stats.warnings += shown["warnings"]
        return shown

    async def open(self, label: str, page: str, model: str, text: str) -> dict:
        t0 = time.perf_counter()
        await self.page.goto(f"{self.url}/{page}?" + urllib.parse.urlencode({"model": model, "text": text}),
                             wait_until="commit")
        shown = await self._settled(label, None, RESULT.get(page), t0)
        self.where, self.text = (page, model), text
        self.stats.opened.add(model)
        return shown

    async def type(self, label: str, text: str) -> dict:
        before = (await self._settled(None, None, None))["fp"]
        box = self.page.locator("textarea").first
        await box.fill(text)
        t0 = time.perf_counter()
        await box.press("Control+Enter")
        shown = await self._settled(label, before, RESULT.get(self.where[0]), t0)
        self.text = text
        return shown

    async def click(self, label: str, tab: str, button: str) -> dict:
        await self.page.get_by_role("tab", name=tab).click()
        before = (await self._settled(None, None, None))["fp"]
        t0 = time.perf_counter()
        await self.page.get_by_role("button", name=button).click()
        return await self._settled(label, before, None, t0)

    async def act(self, action: str, model: str) -> None:
        """Show `model` on the action's page with a new text: opened by its address (timed as `navigate`) when
        another page or model is shown, else typed; on the Generation page then "Generate with all three"."""
        page, _, texts, missing = ACTIONS[action]
        if self.where != (page, model):
            shown = await self.open("navigate", page, model, self.rng.choice(texts))
        else:
            if page == "generation":  # back from the strategies' tab to the distribution
                await self.page.get_by_role("tab", name="Next-token distribution").click()
            shown = await self.type(action, self.rng.choice([t for t in texts if t != self.text]))
        self._expect(action, shown["results"] >= 1, missing)
        if page == "generation":
            await asyncio.sleep(self.rng.uniform(*THINK_S))
            await self.click("generate", "Greedy vs sampling vs beam", "Generate with all three")
            n = await self.page.evaluate(CONTINUATIONS, self.text)
            self._expect("generate", n >= 3, f"{n} of 3 continuations shown")

    def _expect(self, label: str, ok: bool, what: str) -> None:
        if not ok:
            self.stats.errors.append(f"session {self.n} {label}: {what}")


async def drive(url: str, models: dict, sessions: int, minutes: float, seed: int) -> Stats:
    """`sessions` contexts in one chromium, each a Session, for `minutes`."""
    from playwright.async_api import async_playwright

    stats = Stats()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        deadline = time.monotonic() + minutes * 60
        await asyncio.gather(*(Session(i, url, browser, models, stats, seed + i).run(deadline) for i in range(sessions)))
        await browser.close()
    return stats
