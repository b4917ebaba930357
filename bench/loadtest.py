"""Load test: a classroom on one lmscope server.

    make loadtest                                    # 20 sessions, 3 minutes, the demo models
    .venv/bin/python -m bench.loadtest --minutes 2 --sessions 20 [--tiny] [--models DIR] [--keep]

Starts the app the way a lecturer does (`lmscope app` on 127.0.0.1, a free port) on a copy of the demo
models (LMSCOPE_DEMO_MODELS, default assets/models; `--tiny`: tiny random models built on the spot), starts
a training job through the app's own job queue (`model.jobs`, a GPT-2 that trains for the whole test),
then drives N concurrent sessions for M minutes. Each session is a tab of a real browser: a context of its
own (cookies, cache, Streamlit session) in one Debian chromium driven by playwright. Like a student, it
opens a page with a model and a text in its address, tries a few new texts typed into the page's text
box, clicks buttons, then moves on to another page or model, with 1-3 s of reading time between actions:

    attention    Attention page, a new text           (inspection: heatmap, layer x head grid, head lines)
    fill-mask    Masked LM page, a text with [MASK]   (predictions per mask + the corruption panel)
    generation   Generation page, a new prompt        (full-vocabulary next-token distribution by stage)
    generate     ... then "Generate with all three"   (greedy, seeded sampling and beam search)
    navigate     a page opened by its address with a model and a text (another page or model)

An action's time runs from the keypress, click or navigation until the page shows what only the new state
can produce: Streamlit idle, nothing stale, every visible chart drawn, and what the server drew differs
from what the page showed before (read in the page every 50 ms). The browser shares the machine's cores
with the server (in a classroom each student's browser runs on their own machine).

Measured and printed: errors (an exception element, an st.error, a missing result, a page that never
settles in 240 s: must be 0), per-action count / median / p95 / max latency, the server's resident memory
(sampled every second: after warm-up, peak, end), how many times each model was loaded (counted from the
server's own `lmscope.load: loaded model ...` log lines, never assumed), the training job's progress,
every TCP connection the server held (all must be on 127.0.0.1) and every request a page sent elsewhere
(must be none). Exit status 1 on any error, on a model loaded more than once, or on a connection or
request that left 127.0.0.1. Everything stops by itself: the browser closes, the training job is stopped
through the queue, the server is terminated, the temporary folder is removed (unless --keep).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from bench.browser import unavailable
from bench.loadtest_sessions import drive

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------
# Models and server


def _prepare_models(args, work: Path) -> Path:
    """A private copy of the demo models (a rebuild of assets/models during the test cannot disturb it),
    or tiny random models built here."""
    dest = work / "models"
    if args.tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_models import build

        dest.mkdir(parents=True)
        for arch in ("bert-mlm", "bert-pretraining", "roberta-mlm", "gpt2"):
            build(arch, dest)
        return dest
    src = Path(args.models or os.environ.get("LMSCOPE_DEMO_MODELS") or ROOT / "assets" / "models")
    dirs = [d for d in sorted(src.iterdir()) if (d / "config.json").is_file() and list(d.glob("*.safetensors"))] \
        if src.is_dir() else []
    if not dirs:
        raise SystemExit(f"no usable models in {src} (being rebuilt?): run with --tiny")
    dest.mkdir(parents=True)
    for d in dirs:
        shutil.copytree(d, dest / d.name)
    return dest


def _classify(models: Path) -> dict[str, list[str]]:
    """Listed names by what they can do, from config.json (the server decides the rest)."""
    out: dict[str, list[str]] = {"attention": [], "mlm": [], "causal": []}
    for d in sorted(models.iterdir()):
        try:
            cfg = json.loads((d / "config.json").read_text())
        except (OSError, ValueError):
            continue
        arch = (cfg.get("architectures") or [""])[0]
        name = f"demo/{d.name}"
        if cfg.get("model_type") != "lmscope-elmo":
            out["attention"].append(name)
        if "MaskedLM" in arch or "PreTraining" in arch:
            out["mlm"].append(name)
        if "LMHead" in arch or "CausalLM" in arch:
            out["causal"].append(name)
    missing = [k for k, v in out.items() if not v]
    if missing:
        raise SystemExit(f"{models} has no model for: {', '.join(missing)} (use --tiny)")
    return out


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    from app.launch import wait_healthy

    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=timeout, poll=0.3)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None


def _rss(pid: int | None) -> int | None:
    """Resident bytes of a process, None when it is gone."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss if pid else None
    except psutil.Error:
        return None


def _connections(pid: int) -> list[tuple[str, str]]:
    """(local, remote) of every TCP connection of a process."""
    import psutil

    return [(f"{c.laddr.ip}:{c.laddr.port}", f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else "")
            for c in psutil.Process(pid).net_connections(kind="inet")]


def _local(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0]
    return host in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::", "") or host.startswith("127.")


# ---------------------------------------------------------------------------------------------------


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def _mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--tiny", action="store_true", help="tiny random models instead of the demo models")
    p.add_argument("--models", help="model folder (default: LMSCOPE_DEMO_MODELS or assets/models)")
    p.add_argument("--no-training", action="store_true", help="do not run a training job during the test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, runs)")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    why = unavailable()
    if why:
        raise SystemExit(f"the load test drives a browser: {why}")
    work = Path(tempfile.mkdtemp(prefix="lmscope-loadtest-"))
    server = None
    queue = job_id = None
    try:
        models_dir = _prepare_models(args, work)
        models = _classify(models_dir)
        runs = work / "runs"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   LMSCOPE_DEMO_MODELS=str(models_dir), LMSCOPE_RUNS=str(runs), LMSCOPE_MAX_TRAINING_JOBS="1")
        from app.launch import free_port

        port = free_port()
        log_path = work / "server.log"
        log = open(log_path, "wb")
        lmscope = Path(sys.executable).with_name("lmscope")
        cmd = [str(lmscope)] if lmscope.exists() else [sys.executable, "-m", "app.cli"]
        t0 = time.time()
        server = subprocess.Popen([*cmd, "app", "--host", "127.0.0.1", "--port", str(port)], stdout=log,
                                  stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        _wait_healthy(port, server)
        print(f"server up on 127.0.0.1:{port} in {time.time() - t0:.1f} s (pid {server.pid}); models: "
              f"{', '.join(sorted({m for v in models.values() for m in v}))}", flush=True)

        train_pid = None
        if not args.no_training:
            os.environ["LMSCOPE_RUNS"] = str(runs)
            from model import jobs

            queue = jobs.JobQueue(runs, max_running=1)
            job_id = queue.submit("loadtest", jobs.TrainRequest(arch="gpt2", preset="tiny", steps=jobs.MAX_STEPS,
                                                                 threads=1, checkpoint_every=2000, eval_every=5000))
            deadline = time.time() + 180
            while queue.status(job_id).step == 0:
                st = queue.status(job_id)
                if st.state not in jobs.ACTIVE or time.time() > deadline:
                    raise SystemExit(f"the training job did not start: {st.state} {st.message}")
                time.sleep(0.5)
            train_pid = queue.status(job_id).pid
            print(f"training job {job_id} running (pid {train_pid})", flush=True)

        samples: list[tuple[float, int | None, int | None]] = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                samples.append((time.monotonic(), _rss(server.pid), _rss(train_pid)))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        start = time.monotonic()
        sampler.start()
        print(f"driving {args.sessions} sessions for {args.minutes:g} min ...", flush=True)
        stats = asyncio.run(drive(f"http://127.0.0.1:{port}", models, args.sessions, args.minutes, args.seed))
        wall = time.monotonic() - start
        conns = _connections(server.pid)
        stop.set()
        sampler.join()

        train_line = "training: not run"
        if queue is not None:
            st = queue.status(job_id)
            running_at_end = st.state == "running"
            steps_done = st.step
            queue.stop(job_id, "loadtest")
            deadline = time.time() + 120
            while queue.status(job_id).state in jobs.ACTIVE and time.time() < deadline:
                time.sleep(0.5)
            final = queue.status(job_id)
            train_line = (f"training: gpt2 tiny job {'running during the whole test' if running_at_end else 'NOT running at the end'}, "
                          f"{steps_done} steps ({steps_done / wall:.0f} steps/s over the test), then {final.state} "
                          f"({final.message})")
            if not running_at_end:
                stats.errors.append(f"the training job was {st.state} at the end of the test: {st.message}")

        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace"))  # Streamlit's tracebacks are coloured
        loads: dict[str, int] = defaultdict(int)
        for m in re.finditer(r"lmscope\.load: loaded model (\S+) \((\w+)\) in ([\d.]+) s", text):
            loads[m.group(1)] += 1
        tracebacks = len(re.findall(r"Traceback\s*\(most\s+recent\s+call\s+last\)", text))

        # ---- report ---------------------------------------------------------------------------------
        print()
        print(f"lmscope load test: {args.sessions} sessions (chromium contexts) x {wall / 60:.1f} min, "
              f"{'tiny' if args.tiny else 'demo'} models, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}")
        print(f"  {'action':<12} {'count':>6} {'median s':>9} {'p95 s':>8} {'max s':>8}")
        total = 0
        for label in ("attention", "fill-mask", "generation", "generate", "navigate"):
            xs = stats.latencies.get(label, [])
            total += len(xs)
            if xs:
                print(f"  {label:<12} {len(xs):>6} {statistics.median(xs):>9.2f} {_pct(xs, 0.95):>8.2f} {max(xs):>8.2f}")
        print(f"  {total} script runs, {total / wall:.1f} per second; {stats.warnings} warnings shown (not errors)")
        server_rss = [s[1] for s in samples if s[1]]
        warm = [s[1] for s in samples if s[1] and s[0] - start >= min(60.0, wall / 3)]
        print(f"  server memory (RSS): after warm-up {_mb(warm[0] if warm else None)}, peak {_mb(max(server_rss) if server_rss else None)}, "
              f"end {_mb(server_rss[-1] if server_rss else None)}")
        train_rss = [s[2] for s in samples if s[2]]
        if train_rss:
            print(f"  training process memory (RSS): peak {_mb(max(train_rss))}")
        print(f"  {train_line}")
        print("  model loads (from the server log): " + (", ".join(f"{Path(k).name} x{v}" for k, v in sorted(loads.items())) or "none"))
        remote = [c for c in conns if c[1] and not (_local(c[0]) and _local(c[1]))]
        print(f"  server connections at the end: {len(conns)}, all on 127.0.0.1: {'yes' if not remote else 'NO ' + str(remote)}")
        print(f"  tracebacks in the server log: {tracebacks}")
        print(f"  requests the pages sent off 127.0.0.1: {len(stats.outside)}")
        problems = list(stats.errors)
        problems += [f"{k} was loaded {v} times" for k, v in loads.items() if v != 1]
        used = stats.opened
        if len(loads) < len(used):
            problems.append(f"only {len(loads)} of the {len(used)} models used were seen loading in the log")
        problems += [f"connection off 127.0.0.1: {c}" for c in remote]
        problems += [f"a page requested {u}" for u in sorted(set(stats.outside))[:5]]
        if tracebacks:
            problems.append(f"{tracebacks} traceback(s) in the server log")
        if warm and server_rss and max(server_rss) > 1.5 * warm[0] + 300 * 2**20:
            problems.append(f"server memory grew from {_mb(warm[0])} to {_mb(max(server_rss))} after warm-up")
        print(f"  errors: {len(problems)}")
        for e in problems[:20]:
            print(f"    {e}")
        if args.keep:
            print(f"  kept: {work}")
        return 1 if problems else 0
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        if queue is not None and job_id is not None:
            try:
                st = queue.status(job_id)
                if st.state in ("queued", "running") and st.pid:
                    os.killpg(st.pid, signal.SIGKILL)
            except Exception:
                pass
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
