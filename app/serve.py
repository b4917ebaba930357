"""The process `lmscope app` becomes: a warm-up, then Streamlit's own command line.

The warm-up runs before the server starts, in the main thread, so no session ever runs while a module is
half imported: a load test with 20 sessions caught plotly reading a half-imported `pandas` from
`sys.modules` ("partially initialized module 'pandas' has no attribute 'Series'") when another thread was
still importing it, and transformers' lazy modules fail the same way (see model.load.IMPORT_LOCK). It
imports what the pages draw with (pandas, plotly), sets the engine's thread count, and loads the first
listed model into `model.load`'s process-wide cache (the Models page opens on it; it is still loaded once).

    python -m app.serve run app/main.py --server.headless true ...   # what app/launch.py execs
"""
from __future__ import annotations

import logging
import sys


def warm_up() -> None:
    """Import the page libraries and the engine, set its threads, load the first listed model. A failure
    is left for the page that needs the model to report."""
    log = logging.getLogger("lmscope")  # as app.common does under a server: the load line must be seen
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    import pandas  # noqa: F401  (plotly imports it lazily, and not thread-safely)
    import plotly.graph_objects  # noqa: F401

    try:
        from model.load import configure_server_threads, load_model
        from model.registry import list_models

        configure_server_threads()
        entries = [e for e in list_models() if not e.note]
        if entries:
            load_model(entries[0].name, restrict=True)
    except Exception as e:
        logging.getLogger("lmscope.serve").warning("warm-up: %s", e)


def main() -> None:
    from streamlit.web.cli import main as streamlit_main

    warm_up()
    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
