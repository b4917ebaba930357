"""The process `lmscope app` becomes: Streamlit's own command line, plus a warm-up thread.

A cold start spends most of its time importing torch and transformers and loading the first model (the
Models page opens on it), and Streamlit only runs the app's script once a browser connects. The warm-up
thread does that work while the server starts and the browser loads the page, so the first page waits for
less of it. It goes through `model.load.load_model`, the same process-wide cache the pages use (a model is
still loaded once), and it only imports `model` modules, never `app` ones, so the script thread and the
warm-up never wait on each other's half-imported modules.

    python -m app.serve run app/main.py --server.headless true ...   # what app/launch.py execs
"""
from __future__ import annotations

import logging
import sys
import threading


def warm_up() -> None:
    """Set the engine's thread count, import it and load the first listed model (errors are left for
    the page to show)."""
    try:
        from model.load import configure_server_threads, load_model
        from model.registry import list_models

        configure_server_threads()

        entries = [e for e in list_models() if not e.note]
        if entries:
            load_model(entries[0].name, restrict=True)
    except Exception as e:  # the page that needs the model reports it properly
        logging.getLogger("lmscope.serve").info("warm-up skipped: %s", e)


def main() -> None:
    from streamlit.web.cli import main as streamlit_main

    threading.Thread(target=warm_up, name="lmscope-warm-up", daemon=True).start()
    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
