"""What every page shares: the model picker, cached loading and inspection, error display, and the figure
renderer with its download buttons (the frame's own parts, such as the lecture-mode toggle: app/frame.py).

Pages stay thin: widgets -> one call into `model/` through these helpers -> `app.figures.<page>` -> `show()`.
This module does not import torch or transformers: the Models page draws while `lmscope app`'s warm-up
thread still imports them, and reaches the engine only through `engine()` / `load()`, which wait for it.
User mistakes come back as `None` after an `st.error`/`st.warning` explaining them, never a traceback:

    loaded = common.model_picker()                  # sidebar select box bound to ?model=
    if loaded is None:
        return
    insp = common.inspect_text(loaded, text)        # spinner, per-session cache, InputError -> st.error
    if insp is None:
        return
    common.show(F.attention_heatmap(insp, 0, 0), "attention")    # F: app.figures.attention
"""
from __future__ import annotations

import html
import json
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import streamlit as st

from app import model_notes, state
from app.figures.style import LECTURE_FONT, LECTURE_TITLE_FONT
from model.errors import LmscopeError
from model.load import LoadedModel, ModelLoadError, import_engine, load_model
from model.registry import ModelEntry, list_models

DEFAULT_TEXT = "The capital of France is Paris."  # when no model is picked (see `page_text` for the rest)
Need = str | Callable[[LoadedModel], str | None] | None  # what a page needs of its model (`load_picked`)
INSPECTIONS_KEPT = 2  # per session: an inspection holds Q/K of every layer (~37 MB at 512 tokens, 12 x 768)
LAYER_VIEWS_KEPT = 2  # per session: one layer's Q/K each (`inspect_layer`)
IMAGE_FORMATS = ("png", "svg")


# ---------------------------------------------------------------------------------------------------
# The engine (the frame, app/main.py, waits for it before a page that imports it)


def engine() -> None:
    """Wait until torch, transformers and the torch backend are fully imported (importing them if nobody
    has): `lmscope app` imports them in a warm-up thread while the first page draws, and a half-imported
    module read from another thread fails (see model.load.IMPORT_LOCK). The frame calls this before every
    page that imports the engine; `load()` and `inspect_text()` wait the same way."""
    import_engine()


# ---------------------------------------------------------------------------------------------------
# Models


ROOT_VARS = ("LMSCOPE_DEMO_MODELS", "LMSCOPE_RUNS", "LMSCOPE_MODEL_ROOTS")


def _roots() -> tuple[str | None, ...]:
    """The settings that say where model names point (they change between tests, never in a server)."""
    return tuple(os.environ.get(k) for k in ROOT_VARS)


@st.cache_data(ttl=15, show_spinner=False)
def _list_once(roots: tuple[str | None, ...]) -> list[ModelEntry]:
    return list_models()


def listed_models() -> list[ModelEntry]:
    """`model.registry.list_models()`, re-read every 15 s so newly trained models appear."""
    return _list_once(_roots())


listed_models.clear = _list_once.clear  # type: ignore[attr-defined]


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def _load_once(ref: str, dtype: str, roots: tuple[str | None, ...]) -> LoadedModel:
    return load_model(ref, restrict=True, dtype=dtype)  # app paths must lie in the allowed model folders


def load_cached(ref: str, dtype: str = "float32") -> LoadedModel:
    """`load_model` once per process per reference, dtype and model folders (a name such as `demo/bert`
    names another folder when LMSCOPE_DEMO_MODELS / LMSCOPE_RUNS / LMSCOPE_MODEL_ROOTS change, as they do
    between tests); raises ModelLoadError (a ValueError)."""
    return _load_once(ref, dtype, _roots())


load_cached.clear = _load_once.clear  # type: ignore[attr-defined]


LOAD_DTYPE_KEY = "load_bf16"  # the Models page's "Load in bfloat16" toggle (this session's loads)


def load_dtype() -> str:
    """The dtype this session loads models in: bfloat16 when the Models page's toggle is on."""
    return "bfloat16" if st.session_state.get(LOAD_DTYPE_KEY) else "float32"


def load(ref: str, where: Any = st) -> LoadedModel | None:
    """Load a model by listed name or path; a failure is shown (in `where`) and gives None."""
    try:
        return load_cached(ref, load_dtype())
    except ModelLoadError as e:
        where.error(f"Cannot load {ref!r}: {e}")
    except LmscopeError as e:  # any other user-caused refusal from model/
        where.error(str(e))
    return None


def model_names() -> list[str]:
    return [e.name for e in listed_models()]


# ---------------------------------------------------------------------------------------------------
# First screen: which model a page opens on when the link names none, and a text that model reads

# (page url path, model key) -> models to open on, best first. Names not on this disk are skipped; then the
# first listed model the page's capability test accepts. demo/en-* read everyday English; demo/bert & co.
# were trained on the toy world (model/train/toyworld.py) and read only its vocabulary.
# The real-English demo models (demo/en-*) read everyday English but do not yet predict it well (held-out
# cloze and prompt scores in assets/models/DEMO_QUALITY.json): pages open on the toy-world models, which show
# what they learned, until the English ones pass their quality gates; then put them first again.
PAGE_MODELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("masked_lm", "model"): ("demo/bert", "demo/en-bert"),
    ("attention", "model"): ("demo/bert", "demo/en-bert"),
    ("generation", "model"): ("demo/gpt2", "demo/en-gpt2"),
    ("compare", "model"): ("demo/bert", "demo/en-bert"),
    ("compare", "model2"): ("demo/gpt2", "demo/en-gpt2"),
    ("probes", "model"): ("demo/gpt2",),  # toy-world probes; the page's lesson is demo/gpt2 vs demo/gpt2-shortcut
}
OTHER_PAGES_MODELS = ("demo/bert", "demo/en-bert")  # Models, Tokenization, Export
# corpus family -> what a page's text box opens with: "mask" on Masked LM, "prompt" on Generation, else "plain"
TEXTS: dict[str, dict[str, str]] = {
    "english": {"plain": DEFAULT_TEXT, "mask": "The capital of France is [MASK].", "prompt": "The capital of France is"},
    "toyworld": {"plain": "the dog near the cats runs .", "mask": "the dog near the cats [MASK] .",
                 "prompt": "the girls near the horse"},
}
PAGE_TEXT_KIND = {"masked_lm": "mask", "generation": "prompt"}
_PAGE = "_lmscope_page"  # session_state: the url path of the page this run draws (set by app/main.py)


def set_page(url_path: str) -> None:
    """Called by the frame before a page runs: the page the preference lists and default texts are for."""
    st.session_state[_PAGE] = url_path


def current_page() -> str:
    return st.session_state.get(_PAGE, "")


def corpus_family(name: str | None) -> str:
    """"toyworld" for a model trained on lmscope's toy world (its training_record.json says so), else
    "english" (hub models, demo/en-*, models trained on a real corpus, or no record at all)."""
    if not name:
        return "english"
    path = next((Path(e.path) for e in listed_models() if e.name == name), Path(name))
    try:
        record = json.loads((path / "training_record.json").read_text(encoding="utf-8"))
        corpus = record.get("config", {}).get("corpus") if isinstance(record, dict) else None
    except (OSError, ValueError, AttributeError):
        return "english"
    return "toyworld" if corpus == "toyworld" else "english"


def page_text(name: str | None, page: str | None = None) -> str:
    """The text `page`'s box opens with for model `name`: a sentence of the model's corpus (with a mask
    on Masked LM, a prompt to continue on Generation)."""
    kind = PAGE_TEXT_KIND.get(current_page() if page is None else page, "plain")
    return TEXTS[corpus_family(name)][kind]


def _follow_text(name: str) -> None:
    """Open the page's text box on a text `name` reads: when nothing is typed and the link has no text,
    or the box still holds one of lmscope's default texts (of another model or page). A text the user
    typed, or a link's text on the session's first screen, is kept."""
    want = page_text(name)
    shown = state.current("text")
    if shown is None or (shown != want and shown in DEFAULT_TEXTS and state.remembered("text") is not None):
        state.preset("text", want)


DEFAULT_TEXTS = {t for kinds in TEXTS.values() for t in kinds.values()}


def default_model(prefer: Callable[[ModelEntry], bool] | None = None, key: str = "model") -> str | None:
    """The model a page opens on: the first of its preference list (`PAGE_MODELS`) that is listed and
    `prefer` accepts, else the first listed model `prefer` accepts, else the first listed model."""
    entries = listed_models()
    by_name = {e.name: e for e in entries}
    wanted = PAGE_MODELS.get((current_page(), key), OTHER_PAGES_MODELS)
    for name in wanted:
        if name in by_name and (prefer is None or prefer(by_name[name])):
            return name
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
                 need: Need = None, sidebar: bool = True) -> LoadedModel | None:
    """Select box of the listed models bound to `?{key}=`; returns the loaded model, or None after a
    message (no models, load error, or the model cannot serve the view: see `load_picked`'s `need`)."""
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
        name = state.selectbox(label, key, options, default_model(prefer, key))
        model_notes.picker_caption(name, options)
    if key == "model":
        _follow_text(name)
    return name


def load_picked(name: str, need: Need = None) -> LoadedModel | None:
    """The loading half of `model_picker`: load `name`, show its warnings, check `need`: a capability the
    model must have ("mlm", "causal", "attention"), or a view's test that gives the reason it cannot read a
    model (None: it can), e.g. `model.projector.unavailable`."""
    loaded = load(name, where=st)
    if loaded is None:
        return None
    for w in loaded.info.warnings:
        st.warning(w)
    if callable(need):
        reason = need(loaded)
    elif need and need not in loaded.info.capabilities:
        reason = loaded.info.unavailable.get(need, f"{loaded.info.name} cannot show this view")
    else:
        reason = None
    if reason is not None:
        st.warning(f"{reason}. Pick another model in the sidebar.")
        return None
    return loaded


# ---------------------------------------------------------------------------------------------------
# Inspection (per-session cache: an Inspection computes attention lazily and is not shared across sessions)


def _inspection_key(loaded: LoadedModel, text: str, pair: str | None, kw: dict) -> tuple:
    return loaded.info.path, loaded.info.backend, text, pair or None, tuple(sorted(kw.items()))


def _text_checked(loaded: LoadedModel, text: str) -> bool:
    """An empty text is an error (False); a text mostly outside the model's vocabulary gets a warning."""
    if not text or not text.strip():
        st.error("The text is empty: type a sentence above.")
        return False
    model_notes.vocabulary_warning(loaded, text, model_names())
    return True


def _cached_run(store: str, kept: int, key: tuple, message: str, run: Callable[[], Any]) -> Any:
    """`run()` once per `key` in the session's cache `store` (the `kept` latest kept), with a spinner; a
    refusal from model/ (LmscopeError) is shown and gives None."""
    cache: OrderedDict = st.session_state.setdefault(store, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]["result"]
    engine()
    try:
        with st.spinner(message):
            result = run()
            # kept before the spinner closes: closing it is where a rerun the user asked for meanwhile (a
            # slider moved while the model ran) interrupts this script, and the next run finds the result
            cache[key] = {"result": result, "derived": {}}
            while len(cache) > kept:
                cache.popitem(last=False)
    except LmscopeError as e:  # InputError (the text), Unavailable, or any other refusal from model/
        st.error(str(e))
        return None
    return result


def inspect_text(loaded: LoadedModel, text: str, pair: str | None = None, *, checks: bool = True, **kw) -> Any:
    """`model.inspect.inspect` with a spinner, a small per-session cache, and user errors as messages.
    checks: the empty-text error and the vocabulary warning (False: the page showed them already, through
    `inspect_layer` for the same text)."""
    if checks and not _text_checked(loaded, text):
        return None

    def run() -> Any:
        from model.inspect import inspect

        return inspect(loaded, text, pair or None, **kw)

    return _cached_run("_inspections", INSPECTIONS_KEPT, _inspection_key(loaded, text, pair, kw),
                       f"Running {loaded.info.name}…", run)


def inspected(loaded: LoadedModel, text: str, pair: str | None = None, **kw) -> bool:
    """Whether `inspect_text` with these arguments answers from this session's cache, without running the model."""
    return _inspection_key(loaded, text, pair, kw) in st.session_state.get("_inspections", {})


def inspect_layer(loaded: LoadedModel, text: str, layer: int, pair: str | None = None) -> Any:
    """`model.progressive.inspect_layer`: one layer's attention maps from a forward pass stopped after that
    layer (what a page draws before `inspect_text` has the rest), with the same checks, spinner, per-session
    cache (the LAYER_VIEWS_KEPT latest) and messages as `inspect_text`."""
    if not _text_checked(loaded, text):
        return None

    def run() -> Any:
        from model.progressive import inspect_layer as first_layer

        return first_layer(loaded, text, layer, pair or None)

    return _cached_run("_layer_views", LAYER_VIEWS_KEPT, _inspection_key(loaded, text, pair, {"layer": layer}),
                       f"Running {loaded.info.name} up to layer {layer}…", run)


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


PLOTLY_HEIGHT = 450  # plotly's height when a figure sets none
LECTURE_SCALE = 1.4  # lecture mode: figures this much taller
LECTURE_TITLE_CHARS = 32  # longer figure titles are written above the figure in lecture mode (they wrap there)


def plain_text(label: str) -> str:
    """A plotly label's visible text: tags dropped, entities decoded.

    >>> plain_text("Token 3: the <b>[MASK]</b> &amp; co")
    'Token 3: the [MASK] & co'
    """
    return html.unescape(re.sub(r"<[^>]*>", "", label))


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
        fig.update_layout(font=dict(size=LECTURE_FONT), title_font=dict(size=LECTURE_TITLE_FONT),
                          height=int((fig.layout.height or PLOTLY_HEIGHT) * LECTURE_SCALE))
        title = fig.layout.title.text
        if title and len(plain_text(title)) > LECTURE_TITLE_CHARS:  # would run off a projector-sized figure
            st.html(f'<div class="lmscope-figtitle">{title}</div>')  # HTML wraps; plotly's subset of tags is HTML
            fig.update_layout(title_text=None)
        kw.setdefault("theme", None)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)  # long token labels push the plot area instead of being cut
    st.plotly_chart(fig, config=plot_config(name), key=f"fig_{name}", **kw)
    if download:
        st.download_button("Download HTML", data=lambda: figure_html(fig), file_name=f"{name}.html",
                           mime="text/html", key=f"dl_{name}", on_click="ignore", icon=":material/download:")
