"""Browser benchmarks: the app as a user sees it, in Debian's chromium driven by playwright, fully offline
(every request not to 127.0.0.1 is aborted). Each figure is ours against a baseline measured in the same run.

    python -m bench.browser [--full]
    python -m bench.browser --launch [--repeat N]   # only figure a, N launches of each (default 3)
    lmscope bench [--full]            # every benchmark (bench/run.py)

a. launch: `lmscope app` process start -> the first page's content visible (demo models); baseline: a
   minimal "hello" Streamlit script started by plain `streamlit run` with the same flags (not through
   app.serve, which would add lmscope's engine warm-up to the baseline). The launches alternate.
b. rerun: keypress on the attention page's layer/head slider -> the new heatmap title drawn (median of
   ~10 moves, demo BERT); baseline: the same keypresses on a trivial Streamlit slider app (plain
   `streamlit run`, same flags).
c. bytes: websocket frames the browser receives for the attention page on a random 12 x 12 x 768 BERT
   (from navigation until the page is fully drawn); baseline: bertviz head_view HTML for the same model
   and text (bench.engine.bench_attention_payload). 256 tokens in short mode (bertviz needs ~20 s and
   ~3 GB there), 512 with --full (~80 s, ~10 GB).
d. time: navigation (new tab) -> that heatmap visible; baseline: eager forward + bertviz HTML generation.
   No target (INFO).
e. time: a new text of as many tokens typed into the open page -> its heatmap drawn; target <= 3 s (this
   was a timed browser test; speed targets live here). Baseline as in d.
(c and e on a model shaped like Qwen2-0.5B: bench.families, --full.)

Skipped with one printed line when /usr/bin/chromium or playwright is missing.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

from bench.engine import BERTVIZ_VIEW, Figure, bench_attention_payload, build_bert, text_of

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog."

HELLO_APP = 'import streamlit as st\nst.title("hello")\nst.write("hello world")\n'
SLIDER_APP = 'import streamlit as st\nv = st.slider("Value", 0, 100, 0)\nst.write(f"value is {v}")\n'

# A plotly heatmap whose title starts with `title`, with n rows, and its image drawn.
HEATMAP_DRAWN = """([title, n]) => [...document.querySelectorAll('.js-plotly-plot')].some(d => {
  const t = d.querySelector('.gtitle');
  return t && t.textContent.startsWith(title) && d.data && d.data[0] && d.data[0].y && d.data[0].y.length == n
    && d.querySelector('.hm image, .heatmaplayer image') !== null; })"""
# Every plotly figure on the page drawn and Streamlit idle (the page is complete).
ALL_DRAWN = """(count) => [...document.querySelectorAll('.js-plotly-plot')].filter(d => d.querySelector('.main-svg')).length >= count
  && document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]') !== null"""
TEXT_SHOWN = """(text) => [...document.querySelectorAll('[data-testid=stMarkdownContainer]')].some(e => e.textContent.trim() == text)"""


def unavailable() -> str | None:
    """Why the browser benchmarks cannot run here (None: they can)."""
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (make browser-deps)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


def demo_models(tmp: Path) -> tuple[Path, str]:
    """(folder, note): assets/models, or tiny test models built into `tmp` when the demo models are
    missing or being rebuilt."""
    assets = ROOT / "assets" / "models"
    ready = assets.is_dir() and any((p / "config.json").is_file() and any(p.glob("*.safetensors"))
                                    for p in assets.iterdir() if p.is_dir())
    if ready and not (ROOT / "assets" / ".demo-work").exists():
        return assets, ""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_models", ROOT / "tests" / "tiny_models.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    build = tiny.build

    out = tmp / "tiny-demo"
    for arch in ("bert-pretraining", "gpt2"):
        build(arch, out)
    (out / "bert-pretraining").rename(out / "bert")
    return out, "assets/models missing or being rebuilt: tiny test models used instead"


def hello_argv(script: Path, port: int) -> list[str]:
    """`streamlit run script` with exactly the flags `lmscope app` uses, started by Streamlit's own CLI
    (`python -m streamlit`), not by lmscope's app.serve and its engine warm-up."""
    from app.launch import MAIN, streamlit_argv

    argv = streamlit_argv("127.0.0.1", port)
    argv[argv.index(str(MAIN))] = str(script)
    run = argv.index("run")
    return [sys.executable, "-m", "streamlit", *argv[run:]]


def lmscope_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "app.cli", "app", "--host", "127.0.0.1", "--port", str(port)]


@contextmanager
def serve(argv_of, env: dict[str, str] | None = None):
    """Start a server (`argv_of(port)`), wait until healthy; yields (url, start time); stops its PID."""
    from app.launch import serving

    with serving(argv_of, env, cwd=ROOT, timeout=90) as started:
        yield started


class Browser:
    """One chromium; `page()` opens a page in a fresh context (cold HTTP cache) unless `context` is given,
    with every request not to 127.0.0.1 aborted and counted in `outside`."""

    def __init__(self, pw):
        self.b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.outside: list[str] = []

    def context(self):
        ctx = self.b.new_context(viewport=VIEWPORT)

        def route(r):
            if urllib.parse.urlparse(r.request.url).hostname == "127.0.0.1":
                r.continue_()
            else:
                self.outside.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)
        return ctx

    def close(self):
        self.b.close()


def typed_heatmap_seconds(page, text: str, rows: int, timeout_ms: int) -> float:
    """`text` typed into the open attention page -> seconds from the submitting keypress to its heatmap (`rows`
    rows) drawn."""
    box = page.get_by_role("textbox", name="Text")
    box.fill(text)
    t = time.perf_counter()
    box.press("Control+Enter")
    page.wait_for_function(HEATMAP_DRAWN, arg=["Layer 0, head 0:", rows], polling="raf", timeout=timeout_ms)
    return time.perf_counter() - t


def exception_shown(page) -> bool:
    return page.locator("[data-testid=stException]").count() > 0


def load_note() -> str:
    """The machine's 1-minute load average per core, for the notes of timed figures (a shared 2-core box)."""
    return f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


# ---------------------------------------------------------------------------------------------------


def bench_launch(br: Browser, demo: Path, note: str, tmp: Path, repeat: int = 1, verbose: bool = False) -> Figure:
    """a. process start -> first page content visible (median of `repeat` launches of each, alternating)."""
    hello = tmp / "hello.py"
    hello.write_text(HELLO_APP)

    def first_page(argv_of, env, check, arg):
        ctx = br.context()
        with serve(argv_of, env) as (url, t0):
            page = ctx.new_page()
            page.goto(url)
            page.wait_for_function(check, arg=arg, polling="raf", timeout=60_000)
            elapsed = time.perf_counter() - t0
            bad = exception_shown(page)
        ctx.close()
        if bad:
            raise RuntimeError("the app showed an exception")
        return elapsed

    env = {"LMSCOPE_DEMO_MODELS": str(demo), "LMSCOPE_RUNS": str(tmp / "runs")}
    # The Models page describes the first listed model: its "Layers x heads" metric is the content (it needs
    # torch, transformers and that model loaded: the page as the user came for it, not just its title).
    described = """() => [...document.querySelectorAll('[data-testid=stMetricLabel]')]
        .some(e => e.textContent.includes('Layers x heads'))"""
    base, ours = [], []
    for i in range(repeat):
        base.append(first_page(lambda p: hello_argv(hello, p), {}, TEXT_SHOWN, "hello world"))
        ours.append(first_page(lmscope_argv, env, described, None))
        if verbose:
            print(f"  launch {i + 1}/{repeat}: lmscope {ours[-1]:.2f} s, hello-world {base[-1]:.2f} s ({load_note()})",
                  flush=True)
    b, o = statistics.median(base), statistics.median(ours)
    runs = "" if repeat == 1 else f" (runs: {', '.join(f'{x:.1f}' for x in ours)} s vs {', '.join(f'{x:.1f}' for x in base)} s)"
    return Figure("launch to first page (demo models)", o, b, "s", "<= 6 s", o <= 6.0,
                  ours_does="`lmscope app` start -> Models page describing a model (cold browser cache)",
                  baseline_does="hello-world Streamlit script, plain `streamlit run`, same flags -> its text shown",
                  note=f"median of {repeat}{runs}; {load_note()}" + (f"; {note}" if note else ""))


def _demo_bert(demo: Path) -> tuple[str, int, int]:
    """(listed name, layers, heads) of the demo folder's BERT."""
    for p in sorted(demo.iterdir()):
        try:
            cfg = json.loads((p / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if cfg.get("model_type") == "bert":
            return f"demo/{p.name}", cfg["num_hidden_layers"], cfg["num_attention_heads"]
    raise RuntimeError(f"no BERT among the demo models in {demo}")


def _moves(layers: int, heads: int, count: int) -> list[tuple[int, str, int, int]]:
    """(slider index 0=layer 1=head, key, new layer, new head) for `count` keypresses that each change
    the view: mostly the head, every third the layer, bouncing at the ends."""
    layer, head, dl, dh, out = 0, 0, 1, 1, []
    for i in range(count):
        if i % 3 == 2 and layers > 1:
            if not 0 <= layer + dl < layers:
                dl = -dl
            layer += dl
            out.append((0, "ArrowRight" if dl > 0 else "ArrowLeft", layer, head))
        else:
            if not 0 <= head + dh < heads:
                dh = -dh
            head += dh
            out.append((1, "ArrowRight" if dh > 0 else "ArrowLeft", layer, head))
    return out


def bench_rerun(br: Browser, demo: Path, note: str, tmp: Path, moves: int = 10) -> Figure:
    """b. median keypress -> new heatmap title drawn on the attention page vs a trivial slider app."""
    slider_app = tmp / "slider.py"
    slider_app.write_text(SLIDER_APP)

    ctx = br.context()
    with serve(lambda p: hello_argv(slider_app, p)) as (url, _):
        page = ctx.new_page()
        page.goto(url)
        page.wait_for_function(TEXT_SHOWN, arg="value is 0", polling="raf", timeout=60_000)
        slider = page.get_by_role("slider")
        slider.focus()
        base_times = []
        for i in range(1, moves + 1):
            t = time.perf_counter()
            slider.press("ArrowRight")
            page.wait_for_function(TEXT_SHOWN, arg=f"value is {i}", polling="raf", timeout=30_000)
            base_times.append(time.perf_counter() - t)
    ctx.close()

    env = {"LMSCOPE_DEMO_MODELS": str(demo), "LMSCOPE_RUNS": str(tmp / "runs")}
    ctx = br.context()
    with serve(lmscope_argv, env) as (url, _):
        name, layers, heads = _demo_bert(demo)
        page = ctx.new_page()
        page.goto(f"{url}/attention?" + urllib.parse.urlencode({"model": name, "text": DEFAULT_TEXT}))
        n = page.wait_for_function("""() => { for (const d of document.querySelectorAll('.js-plotly-plot')) {
            const t = d.querySelector('.gtitle'); if (t && t.textContent.startsWith('Layer 0, head 0:')
            && d.querySelector('.hm image, .heatmaplayer image')) return d.data[0].y.length; } return 0; }""",
                                   polling="raf", timeout=120_000).json_value()
        sliders = page.get_by_role("slider")
        times = []
        for which, key, layer, head in _moves(layers, heads, moves):
            s = sliders.nth(which)
            s.focus()
            t = time.perf_counter()
            s.press(key)
            page.wait_for_function(HEATMAP_DRAWN, arg=[f"Layer {layer}, head {head}:", n], polling="raf", timeout=30_000)
            times.append(time.perf_counter() - t)
        bad = exception_shown(page)
    ctx.close()
    if bad:
        raise RuntimeError("the attention page showed an exception")
    ours, base = statistics.median(times) * 1000, statistics.median(base_times) * 1000
    return Figure(f"attention slider rerun ({name}, {n} tok)", ours, base, "ms", "<= 400 ms", ours <= 400,
                  ours_does="slider keypress on the attention page -> the new head's heatmap drawn",
                  baseline_does="the same keypress on a trivial st.slider app -> its new value shown",
                  note=f"median of {moves} (fastest {min(times) * 1000:.0f} ms, baseline's "
                  f"{min(base_times) * 1000:.0f} ms); {load_note()}" + (f"; {note}" if note else ""))


def other_text_of(n_tokens: int) -> str:
    """A text of the same n_tokens as text_of(n_tokens) with other words in each place (not cached)."""
    return " ".join(text_of(n_tokens + 3).split()[3:])


def bench_attention_view(br: Browser, tmp: Path, n_tokens: int) -> list[Figure]:
    """c, d, e. websocket bytes and time for the attention page on a 12 x 12 x 768 BERT at n_tokens: opened
    in a new tab, and a new text typed into the open page."""
    roots = tmp / "models"
    model_dir = build_bert(roots / "bert12x12", positions=max(1024, n_tokens))
    text = text_of(n_tokens)
    env = {"LMSCOPE_DEMO_MODELS": str(tmp / "no-demo"), "LMSCOPE_RUNS": str(tmp / "runs"),
           "LMSCOPE_MODEL_ROOTS": str(roots)}
    ctx = br.context()
    with serve(lmscope_argv, env) as (url, _):
        def open_(t):
            return f"{url}/attention?" + urllib.parse.urlencode({"model": str(model_dir), "text": t})

        warm = ctx.new_page()  # loads the model once (not measured) and fills the HTTP cache, like a returning user
        warm.goto(open_("the quick brown fox"))
        warm.wait_for_function(HEATMAP_DRAWN, arg=["Layer 0, head 0:", 6], polling="raf", timeout=180_000)
        warm.close()

        page = ctx.new_page()
        received = [0]

        def on_ws(ws):
            ws.on("framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload)))

        page.on("websocket", on_ws)
        t = time.perf_counter()
        page.goto(open_(text))
        page.wait_for_function(HEATMAP_DRAWN, arg=["Layer 0, head 0:", n_tokens], polling="raf", timeout=120_000)
        ours_s = time.perf_counter() - t
        page.wait_for_function(ALL_DRAWN, arg=3, polling=50, timeout=120_000)  # heatmap, overview, head view
        time.sleep(0.3)  # frames already in flight
        ours_bytes = received[0]
        # e. typed into the open page: a short text first (so the n-row heatmap is gone), then a new
        # n-token text; measured from the submitting keypress to its heatmap drawn.
        typed_heatmap_seconds(page, "the quick brown fox", 6, 120_000)
        typed_s = typed_heatmap_seconds(page, other_text_of(n_tokens), n_tokens, 120_000)
        bad = exception_shown(page)
    ctx.close()
    if bad:
        raise RuntimeError("the attention page showed an exception")
    size_fig, time_fig = bench_attention_payload(model_dir, n_tokens, BERTVIZ_VIEW)
    bv_bytes, bv_s = size_fig.baseline * 1e6, time_fig.baseline
    short = "" if n_tokens >= 512 else f"{n_tokens} tokens in short mode (bertviz at 512 takes ~80 s), 512 with --full; "
    bertviz = f"eager forward with attentions + bertviz {BERTVIZ_VIEW} HTML, same model and text"
    return [
        Figure(f"attention page ws bytes, {n_tokens} tok, 12x12", ours_bytes / 1e6, bv_bytes / 1e6, "MB",
               "<= 1/200 and 4 MB", ours_bytes * 200 <= bv_bytes and ours_bytes <= 4e6,
               ours_does="websocket frames received, navigation -> page fully drawn",
               baseline_does=f"bertviz {BERTVIZ_VIEW} HTML, same model and text", note=short.rstrip("; ")),
        # The issues set a target for typing a new text into an open page (<= 3 s, figure e) and for the
        # data (bench.engine, <= 1/20 of bertviz), none for a new tab, which also pays the page load and
        # plotly's first start in the browser (~1.5 s here): INFO.
        Figure(f"attention page, new tab, {n_tokens} tok, 12x12", ours_s, bv_s, "s", "(none)", None,
               ours_does="navigation (new tab) -> heatmap drawn (model loaded, HTTP cache warm)",
               baseline_does=bertviz, note=f"{short}{load_note()}"),
        Figure(f"attention page, typed, {n_tokens} tok, 12x12", typed_s, bv_s, "s", "<= 3 s", typed_s <= 3.0,
               ours_does="a new text typed into the open page -> its heatmap drawn (tokenize, forward, send, draw)",
               baseline_does=bertviz, note=f"{short}{load_note()}"),
    ]


def run(full: bool = False, launch_only: bool = False, repeat: int | None = None) -> list[Figure]:
    why = unavailable()
    if why:
        print(f"{'bench.browser':<44} skipped: {why}", flush=True)
        return []
    from playwright.sync_api import sync_playwright

    figs: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="lmscope-bench-browser-") as d, sync_playwright() as pw:
        tmp = Path(d)
        demo, note = demo_models(tmp)
        br = Browser(pw)
        try:
            figs.append(bench_launch(br, demo, note, tmp, repeat=repeat or (3 if full or launch_only else 1),
                                     verbose=launch_only))
            if not launch_only:
                figs.append(bench_rerun(br, demo, note, tmp, moves=20 if full else 10))
                figs += bench_attention_view(br, tmp, 512 if full else 256)
        finally:
            br.close()
        if br.outside:
            raise RuntimeError(f"the pages tried to reach other hosts: {sorted(set(br.outside))[:5]}")
    return figs


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="3 launches, 20 slider moves, 512 tokens (slow)")
    p.add_argument("--launch", action="store_true", help="only the launch figure (a), each launch printed")
    p.add_argument("--repeat", type=int, help="launches of each app for figure a (default 1, 3 with --full or --launch)")
    args = p.parse_args(argv)
    for f in run(full=args.full, launch_only=args.launch, repeat=args.repeat):
        print(f.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
