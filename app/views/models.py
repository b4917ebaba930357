"""Models: what is on this disk, and what the chosen model is and can show.

Lists every model the registry finds (demo, trained, Hugging Face cache); describes the chosen one
(architecture, task, size, parameters, vocabulary, layers x heads, positions, capabilities, and which
views are unavailable and why); a second model (`?model2=`) is described beside it. A local folder can
be loaded by path (inside the allowed model folders).

The first page of a fresh server: it imports no torch (the list comes from `model.registry`), draws the
list first and only then waits for the model (see app/serve.py). A model not loaded yet in this process is
described at once from its files (`model.describe`, no torch: what its load will report) with a "loading"
caption, and the description is redrawn from the loaded model (which adds load warnings) when the load ends.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import common, state
from model.capabilities import VIEWS
from model.errors import LmscopeError
from model.describe import describe
from model.load import is_loaded
from model.modelinfo import ModelInfo

NONE = ""  # no second model (left out of the URL)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _describe(info: ModelInfo, name: str) -> None:
    st.subheader(name)  # the name picked (the shared loaded model may carry the name it was first loaded by)
    st.caption(info.path)
    st.markdown(f"**Task:** {info.task} · **architecture:** {info.architecture}")
    c1, c2, c3 = st.columns(3)
    c1.metric("Parameters", f"{info.num_parameters:,}" if info.num_parameters < 10**6 else f"{info.num_parameters / 1e6:.1f} M")
    c2.metric("Size on disk", _size(info.size_bytes))
    c3.metric("Hidden size", str(info.hidden_size))
    c1.metric("Layers x heads", f"{info.num_layers} x {info.num_heads}")
    c2.metric("Vocabulary", f"{info.vocab_size:,}")
    c3.metric("Max positions", "unlimited" if info.max_positions is None else f"{info.max_positions:,}")
    st.table(pd.DataFrame([("model type", info.model_type), ("backend", info.backend),
                           ("mask token", info.mask_token or "—")], columns=["", "value"]).set_index(""))
    st.markdown("**Can show:** " + ", ".join(VIEWS.get(c, c) for c in info.capabilities))
    if info.unavailable:
        st.markdown("**Unavailable here:**")
        st.table(pd.DataFrame([(VIEWS.get(v, v), why) for v, why in sorted(info.unavailable.items())],
                              columns=["view", "why"]).set_index("view"))
    for w in info.warnings:
        st.warning(w)


def _early(ref: str) -> ModelInfo | None:
    """The description of a model not loaded yet, read from its files (instant, no torch), else None:
    already loaded (no need), or not describable without loading (the page then waits, as before)."""
    try:
        if is_loaded(ref, restrict=True):
            return None
        return describe(ref, restrict=True)  # restrict: the same folders the load may read
    except Exception:  # any doubt: wait for the load, which reports real problems
        return None


class Slot:
    """Where one model's description goes: the early one (read from its files) and the loaded one each get
    their own placeholder, and the early one is emptied when the loaded one is drawn. One placeholder
    redrawn would show leftovers: a container put where a container was keeps the old one's children (the
    `empty` in between is merged away before it reaches the browser), and children drawn in this run stay,
    so the early description's last element, its "Unavailable here" table, showed twice until the next run."""

    def __init__(self):
        self.early, self.final = st.empty(), st.empty()

    def draw(self, info: ModelInfo, name: str, loading: bool = False) -> None:
        if not loading:  # emptied first: drawn after the loaded one, both would be on screen for a moment
            self.early.empty()
        with (self.early if loading else self.final).container():
            if loading:
                st.caption("Read from the model's files; loading the model…")
            _describe(info, name)

    def clear(self) -> None:
        self.early.empty()
        self.final.empty()


def _use_path() -> None:
    """Form callback, on the button or Enter (runs before the script, so it may set the sidebar picker's value)."""
    path = (st.session_state.get("models_path") or "").strip()
    st.session_state.pop("models_path_error", None)
    if not path:
        st.session_state["models_path_error"] = "Type a model folder first."
        return
    try:
        common.load_cached(path, common.load_dtype())
    except LmscopeError as e:
        st.session_state["models_path_error"] = f"Cannot load {path!r}: {e}"
        return
    st.session_state[state.widget_key("model")] = path
    state.put("model", path)


def render() -> None:
    st.title("Models")
    entries = common.listed_models()
    name = common.pick_model()
    notes = st.container()  # the picked model's load messages, above the list
    state.keep("text")  # the other pages' text stays in the link

    st.markdown("#### Models on this disk")
    if entries:
        st.dataframe(pd.DataFrame([{"name": e.name, "source": e.source, "type": e.model_type,
                                    "architecture": e.architecture, "size": _size(e.size_bytes),
                                    "parameters": f"{e.parameters / 1e6:.1f} M" if e.parameters else "",
                                    "dtype": e.dtype, "note": e.note, "about": e.description}
                                   for e in entries]), hide_index=True)
    # the widget's own key is dropped when another page runs; the choice is kept under LOAD_DTYPE_KEY
    st.toggle("Load in bfloat16", key="models_bf16", value=bool(st.session_state.get(common.LOAD_DTYPE_KEY)),
              on_change=lambda: st.session_state.update({common.LOAD_DTYPE_KEY: st.session_state["models_bf16"]}),
              help="Half the memory of float32, for a model too large to load otherwise (the load says when); "
                   "maps and predictions differ slightly. Applies to the models this session loads.")
    with st.expander("Load a model folder by path"):
        with st.form("models_path_form", border=False):  # a form: Enter in the box loads, like the button
            st.text_input("Model folder (inside the demo models, trained runs, the Hugging Face cache or "
                          "LMSCOPE_MODEL_ROOTS)", key="models_path")
            st.form_submit_button("Use this model", on_click=_use_path)
        if st.session_state.get("models_path_error"):
            st.error(st.session_state["models_path_error"])

    # Loaded after the list is drawn: on a fresh server the warm-up may still be importing the engine
    # (this waits for it), and the browser draws the list meanwhile -- and the description, when the model
    # can be described from its files: drawn first, then replaced by the loaded model's.
    early = _early(name) if name is not None else None
    loaded = None
    if early is None and name is not None:
        with notes:
            loaded = common.load_picked(name)
    path = early.path if early is not None else loaded.info.path if loaded is not None else None
    options = [NONE] + [n for n in common.model_options("model2") if path is None or n != path]
    second = state.selectbox("Compare with a second model", "model2", options, NONE,
                             format_func=lambda v: v or "(none)")
    left, right = st.columns(2) if second != NONE else (st.container(), None)
    with left:
        slot = Slot()
    if early is not None:
        slot.draw(early, state.get("model"), loading=True)
    if right is not None:
        with right:
            slot2 = Slot()
        early2 = _early(second)
        if early2 is not None:
            slot2.draw(early2, second, loading=True)
    if early is not None:
        with notes:
            loaded = common.load_picked(name)
    if loaded is not None:
        slot.draw(loaded.info, state.get("model"))
    elif early is not None:
        slot.clear()  # the load failed: its message is above
    if right is not None:
        with right:
            other = common.load(second)
        if other is not None:
            slot2.draw(other.info, second)
        else:
            slot2.clear()


render()
