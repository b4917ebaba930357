"""What each model knows, on the page: the picker's grouping (real English / toy world, one line each),
and a warning when a page's text is mostly outside the model's vocabulary (truncation warnings naming a
model that reads longer text come from model.inspect.encode). The facts come from model.model_notes.
"""
from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from model import model_notes as notes


def order(names: Sequence[str]) -> list[str]:
    """Picker options grouped: real-English demo models, toy-world demo models, then the rest."""
    return sorted(names, key=notes.group_rank)  # stable: each group keeps the registry's order


def picker_caption(name: str | None, names: Sequence[str], where: Any = st) -> None:
    """Under the picker: the picked demo model's group and line, and every demo model by group."""
    n = notes.note(name) if name else None
    if n is not None:
        where.caption(f"**{n.group}** — {n.line}")
    groups: dict[str, list[str]] = {}
    for other in names:
        m = notes.note(other)
        if m is not None:
            groups.setdefault(m.group, []).append(f"- `{other}`: {m.line}")
    if groups:
        with where.expander("What the demo models know"):
            for g in notes.GROUP_ORDER:
                if g in groups:
                    st.markdown(f"**{g[0].upper() + g[1:]}**\n" + "\n".join(groups[g]))


def vocabulary_warning(loaded: Any, text: str, listed: Sequence[str], where: Any = st) -> None:
    """st.warning when `text` is mostly outside the model's vocabulary, naming the model to use."""
    if not text or not text.strip():
        return
    msg = notes.vocabulary_message(loaded.info.name, loaded.tokenizer, loaded.info.capabilities, text, list(listed))
    if msg:
        where.warning(msg)


__all__ = ["order", "picker_caption", "vocabulary_warning"]
