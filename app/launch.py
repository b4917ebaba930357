"""`lmscope app`: start the Streamlit app headless, offline, with no telemetry and no e-mail prompt."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

MAIN = Path(__file__).resolve().parent / "main.py"


def streamlit_argv(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "app.serve", "run", str(MAIN),  # page libraries, engine warm-up thread, Streamlit
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
    ]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (for tests and benchmarks that start their own server)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run_app(host: str = "127.0.0.1", port: int = 8501) -> int:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    print(f"lmscope: http://{host}:{port}", file=sys.stderr)
    os.execve(sys.executable, streamlit_argv(host, port), env)  # replace this process: its PID is streamlit's
    return 0


@contextmanager
def serving(argv_of: Callable[[int], list[str]], env: dict[str, str] | None = None, *, cwd: Path | None = None,
            log: Path | None = None, timeout: float = 90.0) -> Iterator[tuple[str, float]]:
    """Start a server (`argv_of(port)` on a free port, offline), wait until it is healthy, yield
    (base URL, perf_counter at start); terminate it (kill after 10 s) on exit. stdout and stderr go to
    `log` when given. Used by the browser tests and the browser bench.

        with serving(lambda port: streamlit_argv("127.0.0.1", port)) as (url, t0): ...   # doctest: +SKIP
    """
    import subprocess
    import time

    port = free_port()
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **(env or {}))
    out = open(log, "wb") if log else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv_of(port), cwd=cwd or MAIN.parent.parent, env=full_env, stdout=out,
                            stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout=timeout)
        yield url, t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()


def wait_healthy(url: str, proc, timeout: float = 60.0, poll: float = 0.05) -> None:
    """Poll `url`/_stcore/health until the server answers "ok"; RuntimeError if `proc` (a Popen) exits
    first or `timeout` seconds pass. Used by the browser tests, the browser bench and the load test."""
    import time
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with status {proc.returncode} before it was healthy")
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                return
        except OSError:
            time.sleep(poll)
    raise RuntimeError(f"{url} did not become healthy in {timeout:.0f} s")
