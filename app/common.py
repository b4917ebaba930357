"""What every page shares: the model picker, cached loading and inspection, error display, lecture mode
and the figure renderer with its download buttons.

Pages stay thin: widgets -> one call into `model/` through these helpers -> `app.figures` -> `show()`.
This module does not import torch or transformers: the Models page draws while `lmscope app`'s warm-up
thread still imports them, and reaches the engine only through `engine()` / `load()`, which wait for it.
User mistakes come back as `None` after an `st.error`/`st.warning` explaining them, never a traceback:

    loaded = common.model_picker()                  # sidebar select box bound to ?model=
    if loaded is None:
        return
    insp = common.inspect_text(loaded, text)        # spinner, per-session cache, InputError -> st.error
    if insp is None:
        return
    common.show(figures.attention_heatmap(insp, 0, 0), "attention")
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

import streamlit as st

from app import model_notes, state
from app.figures import LECTURE_FONT, LECTURE_TITLE_FONT
from model import jobs
from model.load import LoadedModel, ModelLoadError, import_engine, load_model
from model.registry import ModelEntry, list_models

DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog."
INSPECTIONS_KEPT = 2  # per session: an inspection holds Q/K of every layer (~37 MB at 512 tokens, 12 x 768)
IMAGE_FORMATS = ("png", "svg")

LECTURE_CSS = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 22px !important; }
[data-testid="stAppViewContainer"], [data-testid="stSidebar"] { background: #ffffff !important; color: #000000 !important; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li, label, .stMarkdown {
  font-size: 1.25rem !important; color: #000000 !important; font-weight: 500; }
h1 { font-size: 3rem !important; } h2 { font-size: 2.3rem !important; } h3 { font-size: 1.9rem !important; }
input, textarea { font-size: 1.3rem !important; color: #000 !important; border: 2px solid #000 !important; }
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


# ---------------------------------------------------------------------------------------------------
# Frame (called by app/main.py)


def engine() -> None:
    """Wait until torch, transformers and the torch backend are fully imported (importing them if nobody
    has): `lmscope app` imports them in a warm-up thread while the first page draws, and a half-imported
    module read from another thread fails (see model.load.IMPORT_LOCK). The frame calls this before every
    page that imports the engine; `load()` and `inspect_text()` wait the same way."""
    import_engine()


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


# ---------------------------------------------------------------------------------------------------
# Models


@st.cache_data(ttl=15, show_spinner=False)
def listed_models() -> list[ModelEntry]:
    """`model.registry.list_models()`, re-read every 15 s so newly trained models appear."""
    return list_models()


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def load_cached(ref: str) -> LoadedModel:
    """`load_model` once per process per reference; raises ModelLoadError (a ValueError)."""
    return load_model(ref, restrict=True)  # app paths must lie in the allowed model folders


def load(ref: str, where: Any = st) -> LoadedModel | None:
    """Load a model by listed name or path; a failure is shown (in `where`) and gives None."""
    try:
        return load_cached(ref)
    except ModelLoadError as e:
        where.error(f"Cannot load {ref!r}: {e}")
    except ValueError as e:  # any other user-caused refusal from model/
        where.error(str(e))
    return None


def model_names() -> list[str]:
    return [e.name for e in listed_models()]


def default_model(prefer: Callable[[ModelEntry], bool] | None = None) -> str | None:
    """The first listed model `prefer` accepts, else the first listed model."""
    entries = listed_models()
    for e in entries:
        if prefer is None or prefer(e):
            return e.name
    return entries[0].name if entries else None


def prefers(*capabilities: str) -> Callable[[ModelEntry], bool]:
    """A `prefer` test from a model's architecture name (before loading it): "mlm", "causal",
    "attention", "nsp"/"sop"."""
    def test(e: ModelEntry) -> bool:
        arch = e.architecture
        ok = {
            "mlm": "MaskedLM" in arch or "PreTraining" in arch,
            "causal": "LMHead" in arch or "CausalLM" in arch or e.model_type == "lmscope-elmo",
            "attention": e.model_type != "lmscope-elmo",
            "nsp": arch == "BertForPreTraining", "sop": arch == "AlbertForPreTraining",
        }
        return all(ok.get(c, True) for c in capabilities) and not e.note

    return test


def model_options(key: str, extra: Sequence[str] = ()) -> list[str]:
    """Listed names, plus the key's current value when it is a path or an unlisted model."""
    names = model_names()
    current = state.current(key)
    for v in (*extra, current):
        if isinstance(v, str) and v and v not in names:
            names.append(v)
    return names


def model_picker(key: str = "model", label: str = "Model", prefer: Callable[[ModelEntry], bool] | None = None,
                 need: str | None = None, sidebar: bool = True) -> LoadedModel | None:
    """Select box of the listed models bound to `?{key}=`; returns the loaded model, or None after a
    message (no models, load error, or the model lacks capability `need`)."""
    name = pick_model(key, label, prefer, sidebar)
    if name is None:
        return None
    return load_picked(name, need)


def pick_model(key: str = "model", label: str = "Model", prefer: Callable[[ModelEntry], bool] | None = None,
               sidebar: bool = True) -> str | None:
    """The select box of `model_picker` alone (no loading): the picked name, or None after a warning."""
    where = st.sidebar if sidebar else st
    options = model_notes.order(model_options(key))
    if not options:
        where.warning("No models found. Put a model folder in assets/models (or set LMSCOPE_DEMO_MODELS), "
                      "train one on the Train page, or fill the Hugging Face cache.")
        return None
    with st.sidebar if sidebar else st.container():
        name = state.selectbox(label, key, options, default_model(prefer))
        model_notes.picker_caption(name, options)
        return name


def load_picked(name: str, need: str | None = None) -> LoadedModel | None:
    """The loading half of `model_picker`: load `name`, show its warnings, check capability `need`."""
    loaded = load(name, where=st)
    if loaded is None:
        return None
    for w in loaded.info.warnings:
        st.warning(w)
    if need and need not in loaded.info.capabilities:
        reason = loaded.info.unavailable.get(need, f"{loaded.info.name} cannot show this view")
        st.warning(f"{reason}. Pick another model in the sidebar.")
        return None
    return loaded


# ---------------------------------------------------------------------------------------------------
# Inspection (per-session cache: an Inspection computes attention lazily and is not shared across sessions)


def inspect_text(loaded: LoadedModel, text: str, pair: str | None = None, **kw) -> Any:
    """`model.inspect.inspect` with a spinner, a small per-session cache, and user errors as messages."""
    if not text or not text.strip():
        st.error("The text is empty: type a sentence above.")
        return None
    model_notes.vocabulary_warning(loaded, text, model_names())
    cache: OrderedDict = st.session_state.setdefault("_inspections", OrderedDict())
    key = (loaded.info.path, loaded.info.backend, text, pair or None, tuple(sorted(kw.items())))
    if key in cache:
        cache.move_to_end(key)
        return cache[key]["result"]
    engine()
    from model.inspect import InputError, inspect

    try:
        with st.spinner(f"Running {loaded.info.name}…"):
            result = inspect(loaded, text, pair or None, **kw)
    except InputError as e:
        st.error(str(e))
        return None
    except ValueError as e:
        st.error(str(e))
        return None
    cache[key] = {"result": result, "derived": {}}
    while len(cache) > INSPECTIONS_KEPT:
        cache.popitem(last=False)
    return result


def derived(result: Any, name: str, fn: Callable[[], Any]) -> Any:
    """Memoise `fn()` next to a cached inspection (e.g. the layer x head thumbnails)."""
    for entry in st.session_state.get("_inspections", {}).values():
        if entry["result"] is result:
            if name not in entry["derived"]:
                entry["derived"][name] = fn()
            return entry["derived"][name]
    return fn()


def show_warnings(result: Any) -> None:
    for w in getattr(result, "warnings", []) or []:
        st.warning(w)


# ---------------------------------------------------------------------------------------------------
# Figures


def plot_config(name: str) -> dict[str, Any]:
    """Plotly toolbar config: the camera button saves `name` as PNG or SVG (sidebar choice), 2x scale."""
    fmt = st.session_state.get("image_format", "png")
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": fmt if fmt in IMAGE_FORMATS else "png", "filename": name, "scale": 2}}


def figure_html(fig) -> str:
    """A standalone page with plotly.js inlined: opens offline, stays interactive."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def show(fig, name: str, *, download: bool = True, **kw) -> None:
    """Render a plotly figure with the download config, plus a 'Download HTML' button whose file is
    only built when clicked (plotly.js alone is ~4.6 MB)."""
    if state.current("lecture", False):  # our sizes, not the Streamlit theme's (which would override them)
        fig.update_layout(font=dict(size=LECTURE_FONT), title_font=dict(size=LECTURE_TITLE_FONT))
        if fig.layout.height:
            fig.update_layout(height=int(fig.layout.height * 1.4))
        kw.setdefault("theme", None)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)  # long token labels push the plot area instead of being cut
    st.plotly_chart(fig, config=plot_config(name), key=f"fig_{name}", **kw)
    if download:
        st.download_button("Download HTML", data=lambda: figure_html(fig), file_name=f"{name}.html",
                           mime="text/html", key=f"dl_{name}", on_click="ignore", icon=":material/download:")
