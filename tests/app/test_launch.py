"""`lmscope app`'s start: the server comes up first and the engine warms up in a thread (app/serve.py).

What keeps that race-free is tested here: the Models page and the frame import no torch/transformers; the
warm-up holds model.load.IMPORT_LOCK and everything else that reaches the engine waits on it, in one lock
order (a per-key lock taken before it deadlocked against the warm-up); the warm-up always lets go (lock,
start-up event, collector); and real sessions that arrive while the warm-up runs get their pages without
an error.
"""
from __future__ import annotations

import ast
import asyncio
import gc
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _top_level_imports(path: Path) -> list[str]:
    mods = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            mods.append(node.module)
    return mods


def test_the_frame_and_the_models_page_import_no_engine():
    """What a session imports before its first page is drawn: no torch, no transformers (the warm-up
    thread may be importing them at that very moment)."""
    mods = sorted({*_top_level_imports(ROOT / "app" / "main.py"), *_top_level_imports(ROOT / "app" / "views" / "models.py"),
                   "app.common", "app.state", "model.load", "model.registry", "model.jobs"})
    out = _python("import importlib, json, sys\n"
                  f"for m in {mods!r}: importlib.import_module(m)\n"
                  "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'model.inspect') if m in sys.modules)))")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def wait_until_on_line(thread: threading.Thread, func, text: str, timeout: float = 120) -> None:
    """Until `thread`'s innermost frame is `func` on its line containing `text` (e.g. blocked on a lock
    there): synchronisation by the thread's own state, not by a sleep long enough to get there."""
    lines, first = inspect.getsourcelines(func)
    line = first + next(i for i, ln in enumerate(lines) if text in ln)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        f = sys._current_frames().get(thread.ident)
        if f is not None and f.f_code is func.__code__ and f.f_lineno == line:
            return
        time.sleep(0.005)
    raise AssertionError(f"{thread.name} never reached {func.__name__}:{line} ({text!r})")


def test_import_engine_waits_for_the_holder_of_the_import_lock():
    """Ordered by events, no timing: the waiter is seen blocked on the lock, nothing is imported while the
    holder keeps it, the import happens after it lets go, and a second call returns without the lock."""
    out = _python("import inspect, sys, threading, time\n" + inspect.getsource(wait_until_on_line) + """
from model.load import IMPORT_LOCK, engine_imported, import_engine
held, release, log = threading.Event(), threading.Event(), []
def holder():
    with IMPORT_LOCK:
        held.set()
        release.wait(120)
        log.append(("released", engine_imported(), "transformers" in sys.modules))
threading.Thread(target=holder).start()
held.wait()
waiter = threading.Thread(target=lambda: log.append(("imported", import_engine(), engine_imported())))
waiter.start()
wait_until_on_line(waiter, import_engine, "with IMPORT_LOCK")
release.set()
waiter.join(120)
again = threading.Thread(target=import_engine)
with IMPORT_LOCK:  # held by this thread: a second call must return without waiting for it
    again.start()
    again.join(120)
    log.append(("again returned while the lock was held", not again.is_alive()))
print(log)
""")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str([("released", False, False), ("imported", None, True),
                                                        ("again returned while the lock was held", True)])


def test_load_model_does_not_deadlock_with_a_warm_up_holding_the_import_lock(tmp_path):
    """The warm-up takes IMPORT_LOCK first and then loads; a session asking for the same model meanwhile
    must wait and share it (it used to take the model's own lock first and wait forever)."""
    from tiny_models import build

    from model.load import IMPORT_LOCK, LOAD_COUNT, load_model

    path = build("bert-mlm", tmp_path)  # a path no other test has loaded in this process
    holding, got = threading.Event(), {}

    def warm_up():
        with IMPORT_LOCK:
            holding.set()
            wait_until_on_line(threads[1], load_model, "with IMPORT_LOCK")  # the session waits on the lock
            got["warm-up"] = load_model(path)

    def session():
        holding.wait()
        got["session"] = load_model(path)

    threads = [threading.Thread(target=f, daemon=True) for f in (warm_up, session)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 90
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "deadlock: load_model waited for the warm-up forever"
    assert got["warm-up"] is got["session"]
    assert LOAD_COUNT[(str(path.resolve()), "torch")] == 1


def test_the_warm_up_lets_go_when_it_fails():
    """A failing warm-up still releases whoever waits for it: the start-up event, the lock, the collector."""
    from app import serve
    from model.load import IMPORT_LOCK

    holding = threading.Event()
    was_enabled = gc.isenabled()
    serve.begin_import_gc_pause()
    try:
        serve.warm_engine("no/such/model", holding)
        assert holding.is_set() and gc.isenabled()
        free = []
        t = threading.Thread(target=lambda: free.append(IMPORT_LOCK.acquire(timeout=5) and IMPORT_LOCK.release() is None))
        t.start()
        t.join()
        assert free == [True]
    finally:
        gc.unfreeze()  # this test process keeps collecting what it froze
        if not was_enabled:
            gc.disable()


# ---------------------------------------------------------------------------------------------------
# A real server: sessions that arrive while the warm-up still runs.


@pytest.mark.slow
@pytest.mark.browser
def test_sessions_arriving_during_the_warm_up_get_their_pages(tiny_models, tmp_path):
    from browser_helpers import need_browser

    need_browser()
    sys.path.insert(0, str(ROOT))
    from app.launch import free_port, wait_healthy
    from bench.browser import CHROMIUM, CHROMIUM_ARGS
    from bench.loadtest_sessions import Session, Stats

    demo = tmp_path / "demo"
    demo.mkdir()
    for arch in ("bert-mlm", "gpt2"):
        shutil.copytree(tiny_models[arch], demo / arch)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", LMSCOPE_DEMO_MODELS=str(demo),
               LMSCOPE_RUNS=str(tmp_path / "runs"))
    stats, first_sent = Stats(), []
    visits = [("models", "demo/bert-mlm"), ("attention", "demo/bert-mlm"), ("masked_lm", "demo/bert-mlm"),
              ("generation", "demo/gpt2"), ("models", "demo/gpt2"), ("tokenization", "demo/gpt2")]

    async def visit(s, page, model):
        first_sent.append(time.time())
        shown = await s.open(page, page, model, "the cat sleeps [MASK] .")
        if not shown["title"]:
            stats.errors.append(f"{page}: nothing drawn")

    async def drive():
        from playwright.async_api import async_playwright

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            sessions = [Session(i, url, browser, {}, stats, i) for i in range(len(visits))]
            for s in sessions:  # the tabs are open before the server starts: they arrive during its warm-up
                await s.start()
            with open(log_path, "wb") as log:
                server = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--host", "127.0.0.1", "--port",
                                           str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                try:
                    wait_healthy(url, server, timeout=120, poll=0.02)
                    await asyncio.gather(*(visit(s, p, m) for s, (p, m) in zip(sessions, visits)))
                finally:
                    server.terminate()
                    server.wait(timeout=30)
            await browser.close()

    asyncio.run(drive())
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace"))
    assert stats.errors == [], stats.errors
    assert "Traceback" not in text, text[-3000:]
    loads = re.findall(r"lmscope\.load: loaded model (\S+)", text)
    assert sorted(loads) == sorted(set(loads)), loads  # each model loaded once
    done = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) lmscope\.serve: warm-up: engine ready", text)
    assert done, text[-3000:]
    from datetime import datetime

    ended = datetime.strptime(done.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    if min(first_sent) >= ended:
        pytest.skip("the warm-up ended before the first session ran: the window was not exercised on this machine")
