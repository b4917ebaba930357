"""URL query parameters <-> Streamlit session state: every view of lmscope is a shareable link.

A page binds its widgets through the helpers below instead of calling `st.text_input(...)` directly.
Each helper reads the value (this session's last value, else the URL, else the default), draws the
widget, remembers the new value for the session (so it survives page switches, which drop widget
state) and marks the key for the URL. `app/main.py` calls `begin()` before the page and `publish()`
after it, so the address bar always holds exactly the keys of the page on screen.

    >>> parse("layer", "3"), parse("models", "demo/bert,demo/gpt2"), parse("wwm", "1")
    (3, ['demo/bert', 'demo/gpt2'], True)

Query parameters (the README's table is generated from this list: `KEYS`):

    key        type   pages                          meaning
    model      str    all                            the model: a listed name (`demo/bert`) or a path
    text       str    all                            the input text
    lecture    bool   all                            lecture mode: large type, high contrast
    model2     str    models                         a second model shown side by side
    models     list   tokenization                   tokenizers to compare (comma-separated names)
    layer      int    attention, projector, search  layer index, from 0 (projector and search: 0 = embeddings)
    head       int    attention                      head index, from 0
    token      int    attention                      selected token index (what it attends to / what attends to it)
    lines      int    attention                      lines per token in the head view
    topk       int    masked-lm                      predictions per mask
    panel      str    attention                      lower panel: "head view", "rollout", "head statistics", "bertviz"
    bertviz    str    attention                      bertviz view: "head", "model" or "neuron" (queries and keys; torch models)
    pair       str    masked-lm                      sentence B for next-sentence / sentence-order prediction
    masked     list   masked-lm                      token indices to mask (comma-separated)
    wwm        bool   masked-lm                      whole-word masking (mask every piece of a picked word)
    seed       int    masked-lm, generation          seed of the corruption draw / of sampling
    temperature float generation                     softmax temperature
    top_k      int    generation                     keep the k most probable tokens (0 = off)
    top_p      float  generation                     nucleus: keep the smallest set with this much probability
    typical_p  float  generation                     typical sampling mass
    min_p      float  generation                     drop tokens below min_p x the top probability
    repetition_penalty float generation              penalty on tokens already in the text
    new_tokens int    generation                     tokens to generate
    beams      int    generation                     beam width of beam search
    mode       str    generation                     step-by-step pick: "sample" or "greedy"
    source     str    generation                     text whose attention is shown
    lens       str    compare                        whose logit lens is shown
    arch       str    train                          architecture to train
    preset     str    train                          training preset
    corpus     str    train                          corpus: embedded name, upload or path
    corpus_path str   train                          corpus file on the server
    steps      int    train                          training steps
    probe      str    train                          probe sentence scored at every checkpoint
    opset      int    export                         ONNX opset
    fp16       bool   export                         export fp16 weights
    probes     int    probes                         number of agreement probes scored
    saliency   str    masked-lm, generation, attention  saliency method: "integrated gradients", "grad x input", "off"
    sal_pos    int    masked-lm                      which mask the saliency strip explains
    sal_token  str    masked-lm, generation, attention  which candidate token it explains
    ffn_layer  str    neurons                        feed-forward layer factorized: "all" or an index
    k          int    neurons                        NMF components
    data       str    projector, corpus search       text set: "toyworld", "english", "pydoc", "wordnet" (or "upload")
    proj       str    projector                      projection: "pca" or "umap"
    color      str    projector                      colour by "label", "token" or "position"
    tokens     int    projector                      at most this many tokens are projected
    point      int    projector                      the clicked token (index into the points)
    query      str    corpus search                  the text whose token is looked up
    metric     str    corpus search                  "cosine" or "l2"
    hits       int    corpus search                  nearest tokens listed
    (on compare, `model` is the masked LM and `model2` the causal model; each page's docstring says more)

Values that do not parse (`layer=abc`) or fall outside a widget's range are replaced by the default or
clamped; they never raise.
"""
from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

# key -> type: how its URL string is read (keys not listed here are read as the type of their default).
KEYS: dict[str, type] = {
    "model": str, "text": str, "lecture": bool, "model2": str, "models": list, "layer": int, "head": int,
    "token": int, "lines": int, "topk": int, "panel": str, "bertviz": str, "pair": str, "masked": list, "wwm": bool, "seed": int,
    "temperature": float, "top_k": int, "top_p": float, "typical_p": float, "min_p": float,
    "repetition_penalty": float, "new_tokens": int, "beams": int, "mode": str, "source": str, "lens": str,
    "arch": str, "preset": str, "corpus": str, "corpus_path": str, "steps": int, "probe": str, "opset": int,
    "fp16": bool, "probes": int,
    # beyond attention (app/widgets/saliency.py, app/views/neurons.py, projector.py, corpus_search.py)
    "saliency": str, "sal_pos": int, "sal_token": str, "ffn_layer": str, "k": int,
    "data": str, "proj": str, "color": str, "tokens": int, "point": int, "query": str, "metric": str, "hits": int,
}
_VALUE = "qv:"  # session_state prefix of remembered values (survive page switches)
_WIDGET = "qp_"  # session_state prefix of widget keys: `at.text_input(key="qp_text")` in tests
_PUBLISHED = "_qp_published"
_OPENED = "_qp_opened"  # the query string the session was opened with (raw strings)
_WATCH = "_qp_watch:"  # session_state prefix: what a key's value referred to last run (forget_on_change)


def widget_key(key: str) -> str:
    """The Streamlit widget key bound to a query parameter (stable, for tests and callbacks)."""
    return _WIDGET + key


def parse(key: str, raw: str, kind: type | None = None) -> Any:
    """A URL string -> a typed value (None when it does not parse)."""
    kind = kind or KEYS.get(key, str)
    try:
        if kind is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is list:
            return [p for p in raw.split(",") if p != ""]
        return raw
    except (TypeError, ValueError):
        return None


def _empty(value: Any) -> bool:
    """Values left out of the URL: nothing, False, "" and []."""
    return value is None or value is False or (isinstance(value, (str, list, tuple)) and len(value) == 0)


def encode(value: Any) -> str:
    """A typed value -> its URL string (inverse of `parse`)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def begin() -> None:
    """Call once per run, before the page: on a session's first run keep the URL it was opened with."""
    ss = st.session_state
    if _OPENED not in ss:
        ss[_OPENED] = st.query_params.to_dict()  # parsed by get() with each key's type
    ss[_PUBLISHED] = {}  # what the page binds this run


def publish() -> None:
    """Call once per run, after the page: the URL becomes exactly the keys this run bound."""
    wanted = st.session_state.get(_PUBLISHED, {})
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def get(key: str, default: Any = None) -> Any:
    """This session's value of `key` (else the URL's, else `default`), without drawing anything."""
    ss = st.session_state
    if _VALUE + key in ss:
        return ss[_VALUE + key]
    url = ss.get(_OPENED)
    raw = (url if url is not None else st.query_params.to_dict()).get(key)
    if raw is not None:
        value = parse(key, raw, KEYS.get(key) or (type(default) if default is not None else str))
        if value is not None:
            return value
    return default


def put(key: str, value: Any) -> Any:
    """Remember `value` for the session and put it in the URL (empty values and False are left out of
    the URL, so links stay short). Returns it."""
    st.session_state[_VALUE + key] = value
    published = st.session_state.setdefault(_PUBLISHED, {})
    if _empty(value):
        published.pop(key, None)
    else:
        published[key] = encode(value)
    return value


def keep(*keys: str) -> None:
    """Keep keys this page has no widget for (the Models page keeps `text`) in the URL."""
    for key in keys:
        value = get(key)
        if value is not None:
            put(key, value)


def _seed(key: str, value: Any) -> str:
    """Write `value` into the widget's state before the widget is drawn; returns the widget key.

    Written on every run, not only the first: two pages share a key (`text`) through different widgets
    (different labels), and Streamlit hands a widget only a value set through session state, not one
    another widget left under the same key.
    """
    wk = widget_key(key)
    st.session_state[wk] = value
    return wk


def forget_on_change(key: str, *watched: Any) -> None:
    """Drop this session's value of `key` when `watched` (what it refers to, e.g. the model and text a token
    index points into) differs from the last run that asked: index 7 of one text means nothing in another.
    Call before drawing the key's widget. The first run keeps the value of the link it was opened with."""
    mark, ss = _WATCH + key, st.session_state
    if mark in ss and ss[mark] != watched:
        ss[_VALUE + key] = None
        ss.pop(widget_key(key), None)
    ss[mark] = watched


def remembered(key: str) -> Any:
    """This session's stored value of `key` (None if the session never bound it; the URL is not read)."""
    return st.session_state.get(_VALUE + key)


def preset(key: str, value: Any) -> None:
    """Give a bound widget `value` before it is drawn this run (as if the user had set it)."""
    st.session_state[_VALUE + key] = value
    _seed(key, value)


def current(key: str, default: Any = None) -> Any:
    """The value a bound widget shows right now (its state if drawn before, else `get`)."""
    wk = widget_key(key)
    return st.session_state[wk] if wk in st.session_state else get(key, default)




# ---------------------------------------------------------------------------------------------------
# Widgets bound to query parameters. Each returns the widget's value; extra kwargs go to Streamlit.


def text_input(label: str, key: str, default: str = "", *, area: bool = False, **kw) -> str:
    """A text box (a text area with `area=True`) bound to `key`."""
    value = current(key, default)
    wk = _seed(key, value if isinstance(value, str) else default)
    widget = st.text_area if area else st.text_input
    return put(key, widget(label, key=wk, **kw))


def _number(value: Any, default: int | float) -> int | float:
    """`value` as the type of `default` (bools and unparsable values give `default`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN: `?temperature=nan`
        return default
    return type(default)(value)


def slider_value(key: str, min_value: int | float, max_value: int | float, default: int | float) -> int | float:
    """The value `slider(..., key, min_value, max_value, default)` will show this run, before it is drawn."""
    return min(max(_number(current(key, default), default), min_value), max_value)


def slider(label: str, key: str, min_value: int | float, max_value: int | float, default: int | float, **kw):
    """A number slider bound to `key` (int or float, as `default`); values outside [min, max] are clamped."""
    value = slider_value(key, min_value, max_value, default)
    st.session_state[widget_key(key)] = value  # clamp before the widget exists (allowed), never after
    if min_value == max_value:  # Streamlit refuses a slider with an empty range
        st.caption(f"{label}: {min_value}")
        return put(key, min_value)
    return put(key, st.slider(label, min_value, max_value, key=widget_key(key), **kw))


def number_input(label: str, key: str, min_value: int | float, max_value: int | float, default: int | float, **kw):
    """A number box bound to `key` (int or float, as `default`); values outside [min, max] are clamped."""
    value = min(max(_number(current(key, default), default), min_value), max_value)
    st.session_state[widget_key(key)] = value
    kw.setdefault("step", 1 if isinstance(default, int) else 0.1)
    return put(key, type(default)(st.number_input(label, min_value=min_value, max_value=max_value,
                                                  key=widget_key(key), **kw)))


def selectbox(label: str, key: str, options: Sequence[Any], default: Any = None, **kw) -> Any:
    """A select box bound to `key`; a stored value that is not an option falls back to `default`
    (or the first option)."""
    options = list(options)
    if not options:
        raise ValueError(f"nothing to choose for {label!r}")
    fallback = default if default in options else options[0]
    value = current(key, fallback)
    st.session_state[widget_key(key)] = value if value in options else fallback
    return put(key, st.selectbox(label, options, key=widget_key(key), **kw))


def multiselect(label: str, key: str, options: Sequence[Any], default: Sequence[Any] = (), **kw) -> list:
    """A multiselect bound to `key`; stored values that are not options are dropped. Options that are
    ints are read back as ints from the URL."""
    options = list(options)
    value = current(key, list(default))
    if not isinstance(value, list):
        value = list(default)
    if options and isinstance(options[0], int):
        value = [int(v) for v in value if str(v).lstrip("-").isdigit()]
    st.session_state[widget_key(key)] = [v for v in value if v in options]
    return put(key, list(st.multiselect(label, options, key=widget_key(key), **kw)))


def pills(label: str, key: str, options: Sequence[Any], default: Sequence[Any] = (), **kw) -> list:
    """Clickable pills (several may be on) bound to `key`, like `multiselect`: stored values that are not
    options are dropped; int options are read back as ints from the URL."""
    options = list(options)
    value = current(key, list(default))
    if not isinstance(value, list):
        value = list(default)
    if options and isinstance(options[0], int):
        value = [int(v) for v in value if str(v).lstrip("-").isdigit()]
    st.session_state[widget_key(key)] = [v for v in value if v in options]
    return put(key, list(st.pills(label, options, selection_mode="multi", key=widget_key(key), **kw) or []))


def toggle(label: str, key: str, default: bool = False, **kw) -> bool:
    """An on/off toggle bound to `key`."""
    value = current(key, default)
    _seed(key, bool(value))
    return put(key, bool(st.toggle(label, key=widget_key(key), **kw)))


def radio(label: str, key: str, options: Sequence[Any], default: Any = None, **kw) -> Any:
    """A horizontal radio bound to `key`; a stored value that is not an option falls back to `default`."""
    options = list(options)
    fallback = default if default in options else options[0]
    value = current(key, fallback)
    st.session_state[widget_key(key)] = value if value in options else fallback
    kw.setdefault("horizontal", True)
    return put(key, st.radio(label, options, key=widget_key(key), **kw))
