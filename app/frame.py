"""The frame's own parts (called by app/main.py around every page): the lecture-mode toggle and its CSS,
the figure download format, the sweep of ended sessions' upload folders, and lmscope's log lines on the
server's stderr. What the pages share is app/common.py.
"""
from __future__ import annotations

import logging
import time

import streamlit as st

from app import state
from app.common import IMAGE_FORMATS
from model import jobs

# Lecture mode: large type and high contrast that still fits a 1280 x 720 projector. Only text is enlarged
# (not the root font size, which would scale every rem of Streamlit's paddings and the sidebar with it):
# slim page margins, navigation labels that wrap instead of being cut, tabs that wrap instead of scrolling.
LECTURE_CSS = """
<style>
[data-testid="stAppViewContainer"], [data-testid="stSidebar"] { background: #ffffff !important; color: #000000 !important; }
[data-testid="stMainBlockContainer"] { padding: 1.25rem 1.5rem 3rem 1.5rem !important; max-width: 100% !important; }
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p, [data-testid="stMain"] [data-testid="stMarkdownContainer"] li,
[data-testid="stMain"] label p, [data-testid="stMain"] [data-testid="stWidgetLabel"] p {
  font-size: 1.4rem !important; color: #000000 !important; font-weight: 500; }
[data-testid="stSidebar"] [data-testid="stMarkdownContainer"] p, [data-testid="stSidebarNav"] span {
  font-size: 1.15rem !important; white-space: normal !important; overflow: visible !important; color: #000000 !important; }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] p { font-size: 1.15rem !important; color: #222 !important; }
h1 { font-size: 2.4rem !important; padding-top: 0 !important; } h2 { font-size: 1.9rem !important; } h3 { font-size: 1.6rem !important; }
[data-testid="stMain"] input, [data-testid="stMain"] textarea { font-size: 1.35rem !important; color: #000 !important;
  border: 2px solid #000 !important; }
[data-testid="stMain"] button p { font-size: 1.25rem !important; }
[data-testid="stTabs"] [role="tablist"] { flex-wrap: wrap !important; row-gap: 0.25rem; overflow: visible !important; }
[data-testid="stTabs"] [role="tablist"] p { font-size: 1.2rem !important; }
.lmscope-figtitle { font-size: 1.5rem; font-weight: 600; line-height: 1.3; color: #000; margin: 0.25rem 0 0; }
</style>
"""


def _server_log() -> None:
    """lmscope's own log lines (e.g. `lmscope.load: loaded model ...`, once per model and process) on the
    server's stderr, next to Streamlit's. Only under a real server: not in AppTest or a CLI process."""
    from streamlit.runtime import Runtime

    log = logging.getLogger("lmscope")
    if Runtime.exists() and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


_server_log()


def lecture_mode() -> bool:
    """The sidebar's lecture-mode toggle (bound to ?lecture=1); injects large, high-contrast CSS."""
    on = state.toggle("Lecture mode", "lecture", False, help="Large type and high contrast for projectors")
    if on:
        st.html(LECTURE_CSS)  # st.html keeps <style> (it strips scripts), and CSS applies page-wide
    return on


def server_session_id() -> str | None:
    """The id the Streamlit server knows this browser session by (None outside a script run)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def live_server_sessions() -> set[str] | None:
    """Ids of the sessions this server still holds (connected, or within Streamlit's reconnect window);
    None when not running under a Streamlit server (AppTest, bare mode)."""
    try:
        from streamlit.runtime import Runtime

        if not Runtime.exists():
            return None
        return {info.session.id for info in Runtime.instance()._session_mgr.list_sessions()}
    except Exception:  # a private API: if it moves, fall back to the finalizers and the dead-process rule
        return None


UPLOAD_SWEEP_S = 30.0  # look for upload folders of ended sessions at most this often (per server process)
_last_sweep = [0.0]


def sweep_uploads(force: bool = False) -> None:
    """Remove the upload folders of sessions that have ended (see `model.jobs.sweep_uploads`); cheap,
    throttled, called by the frame after every run."""
    now = time.monotonic()
    if not force and now - _last_sweep[0] < UPLOAD_SWEEP_S:
        return
    _last_sweep[0] = now
    try:
        jobs.sweep_uploads(live_server_sessions())
    except OSError:
        pass


def image_format_picker() -> str:
    """Which format the camera button of every figure's toolbar saves (session only)."""
    return st.radio("Figure download format", IMAGE_FORMATS, horizontal=True, key="image_format",
                    help="The camera icon in each figure's toolbar saves in this format; "
                         "'Download HTML' saves an interactive page that works offline.")
