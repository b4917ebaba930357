"""The process `lmscope app` becomes: page libraries imported, the engine warm-up started, then Streamlit.

    python -m app.serve run app/main.py --server.headless true ...   # what app/launch.py execs

Most of a cold start is the engine: importing torch (~1.1 s of CPU here), transformers (~0.6 s) and its
modeling code (~1.6 s) and loading the first listed model (~0.2 s; the Models page opens on it), against
~1 s for Streamlit to answer and ~2-3 s for a cold browser to draw a page. So the server starts first and
the engine warms up in a thread meanwhile; the first page (Models, drawn from `model.registry` without
torch) waits only for the model itself, and the browser loads and draws everything else meanwhile.

Race-free by construction, not by timing (a load test with 20 sessions caught both failures below when an
earlier background warm-up simply ran next to the sessions):

- what the pages use besides the engine -- pandas, plotly, pyarrow, `app.state`, `model.jobs`,
  `model.load`, `model.registry` -- is imported here in the main thread before the server starts: plotly
  reads `pandas` from `sys.modules` without the import lock and failed on a half-imported one ("partially
  initialized module 'pandas' has no attribute 'Series'");
- the warm-up thread takes `model.load.IMPORT_LOCK` before the server starts and holds it until torch,
  transformers and the torch backend are imported and the first model is loaded; it marks the engine
  ready last (`model.load.import_engine`). Every other way to the engine waits on that lock:
  `load_model` takes it (first, before any other lock: a per-key lock taken before it deadlocked with the
  warm-up), `app.common.engine()` takes it, and the frame (app/main.py) calls `engine()` before any page
  other than Models runs its script (those scripts import torch at their top). So no session imports a
  module of the engine, or reads transformers' lazy modules, while the warm-up does.

The cyclic garbage collector is paused during the start-up imports and what they created is frozen
afterwards (see `freeze_startup_objects`). A warm-up failure is logged and left for the page that needs
the model to report.
"""
from __future__ import annotations

import gc
import logging
import sys
import threading
import time

_log = logging.getLogger("lmscope.serve")


def _log_to_stderr() -> None:
    """lmscope's log lines on stderr (as app.common does under a server: the load line must be seen)."""
    log = logging.getLogger("lmscope")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def import_page_libraries() -> None:
    """Import, in this (the main) thread, what the pages use besides the engine, so that no session ever
    runs next to a half-imported one of them."""
    import pandas  # noqa: F401  (plotly reads it from sys.modules, not thread-safely)
    import plotly.graph_objects  # noqa: F401
    import pyarrow  # noqa: F401  (st.dataframe / st.table serialize through it)

    import app.state  # noqa: F401  (app.common itself is left to the first run: its caches want the runtime)
    import model.jobs  # noqa: F401
    import model.load  # noqa: F401  (no torch: see import_engine)
    import model.registry  # noqa: F401


def first_model() -> str | None:
    """The first listed model that can load (the Models page's default), or None."""
    from model.registry import list_models

    entries = [e for e in list_models() if not e.note]
    return entries[0].name if entries else None


def warm_engine(first: str | None, holding: threading.Event | None = None) -> None:
    """Under IMPORT_LOCK for its whole run: set the engine's threads (imports torch), load `first` into
    model.load's process-wide cache (imports transformers and the backend), then mark the engine ready.
    `holding` is set once the lock is held (or the warm-up failed before), and the collector pause of
    `begin_import_gc_pause` ends here whatever happens."""
    try:
        from model.load import IMPORT_LOCK, configure_server_threads, import_engine, load_model

        with IMPORT_LOCK:
            if holding is not None:
                holding.set()
            t0 = time.perf_counter()
            try:
                configure_server_threads()
                if first is not None:
                    load_model(first, restrict=True)
            except Exception as e:
                _log.warning("warm-up: %s", e)
            finally:
                try:
                    import_engine()  # still under the lock: others see the engine ready only after the model
                except Exception as e:
                    _log.warning("warm-up: cannot import the engine: %s", e)
            _log.info("warm-up: engine ready%s in %.2f s", f" and {first} loaded" if first else "",
                      time.perf_counter() - t0)
    finally:
        if holding is not None:
            holding.set()
        end_import_gc_pause()


def begin_import_gc_pause() -> None:
    """No automatic cyclic garbage collection while the start-up imports run: they allocate ~700k objects
    that all stay alive, and the collector's passes over them cost ~15% of the import CPU (measured:
    engine import and first load 5.1 s of CPU with the collector, 4.2 s without)."""
    gc.disable()


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, classes, functions) out of the collector's way for good
    (`gc.freeze`). Besides the automatic collections, Streamlit collects all generations after every
    script run (`runner.postScriptGC`): with torch and transformers loaded and not frozen that scan took
    0.2-0.45 s per run here, holding the GIL; frozen, ~1 ms. Objects of sessions alive at the freeze stay
    collectable by reference counting (checked: a session opened during the warm-up is freed when its tab
    closes); only a reference cycle among them would outlive it."""
    gc.freeze()


def end_import_gc_pause() -> None:
    """The collector back on, after freezing what the start-up imported."""
    freeze_startup_objects()
    gc.enable()


def start_warm_up() -> threading.Thread:
    """Start the engine warm-up thread; returns once it holds IMPORT_LOCK (before any session can run)."""
    try:
        first = first_model()
    except Exception as e:
        _log.warning("warm-up: cannot list the models: %s", e)
        first = None
    holding = threading.Event()
    thread = threading.Thread(target=warm_engine, args=(first, holding), name="lmscope-warm-up", daemon=True)
    thread.start()
    holding.wait()  # set once the thread holds IMPORT_LOCK (or has given up)
    return thread


def warm_up() -> None:
    """The whole warm-up in the calling thread (page libraries, engine, first model): for scripts and tests."""
    _log_to_stderr()
    begin_import_gc_pause()
    import_page_libraries()
    warm_engine(first_model())  # ends the pause


def main() -> None:
    begin_import_gc_pause()  # until the warm-up thread ends it
    from streamlit.web.cli import main as streamlit_main

    _log_to_stderr()
    import_page_libraries()
    freeze_startup_objects()  # no session exists yet; the warm-up freezes the engine's objects when done
    start_warm_up()
    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
