"""Export: the chosen model to ONNX with its attention maps kept, the parity report (onnxruntime against
torch, measured at export), then the exported file loaded back and inspected side by side with torch.

Exports land in `runs/onnx/<model>-<fingerprint>/model.onnx` (the fingerprint covers the source weights,
opset and fp16), so exporting the same model twice reuses the first file and a retrained model gets a new
one. Keys: `opset`, `fp16` (plus `model`, `text`).
"""
from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import common, state
from app.figures.attention import attention_heatmap
from model.errors import LmscopeError
from model.registry import runs_dir

DEFAULT_OPSET = 17  # what onnxruntime and the notes on this machine were measured with
REPORT_WIDTH = 76  # characters per line of the export summary (the box holds ~100 at 1400 px, ~75 in lecture mode)


def export_path(info, opset: int, fp16: bool) -> Path:
    """Where an export of this model with these settings goes (stable while the source weights are unchanged)."""
    src = Path(info.path)
    stamp = [info.path, opset, fp16]
    for f in sorted(src.glob("*.safetensors")) + [src / "config.json"]:
        if f.is_file():
            s = f.stat()
            stamp += [f.name, s.st_size, s.st_mtime_ns]
    digest = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", info.name).strip("-.") or "model"
    return runs_dir() / "onnx" / f"{slug}-opset{opset}{'-fp16' if fp16 else ''}-{digest}" / "model.onnx"


def _export(loaded, out: Path, opset: int, fp16: bool) -> None:
    """Button callback: run the export (it checks parity before anything is put in place)."""
    from model.onnx.export import export_onnx

    try:
        report = export_onnx(loaded, out, opset=opset, fp16=fp16)
    except LmscopeError as e:
        st.session_state["export_error"] = str(e)
        return
    st.session_state.setdefault("export_reports", {})[str(out)] = report.lines()


def report_text(lines: list[str], width: int = REPORT_WIDTH) -> str:
    """The export report for its box: each line wrapped at spaces to `width` characters with a hanging indent,
    never inside a word nor between a name or number and its number or unit (`logits 6.0e-07`, `0.9 s`
    stay on one line); nothing is dropped. The box wraps too (`wrap_lines`) for windows narrower than
    `width` characters, where a path longer than the box breaks anywhere."""
    out = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip(" "))]
        glued = re.sub(r"(?<=\S) (?=[\d.])|(?<=\d) (?=\S)", "\u00a0", line)  # textwrap never breaks at U+00A0
        out.append(textwrap.fill(glued, width, subsequent_indent=indent + "    ", break_long_words=False,
                                 break_on_hyphens=False).replace("\u00a0", " "))
    return "\n".join(out)


def _metadata(out: Path) -> dict | None:
    meta = out.with_name(out.name[: -len(".onnx")] + ".lmscope.json")
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _parity_table(meta: dict) -> pd.DataFrame | None:
    """FILE.lmscope.json's `parity` block ({"max_error": {output: err}, "tolerance", "fp16_drift"}) as a table."""
    parity = meta.get("parity")
    if not isinstance(parity, dict) or not isinstance(parity.get("max_error"), dict):
        return None
    drift = parity.get("fp16_drift") or {}
    rows = [{"output": k, "max |onnx - torch| (relative)": float(v), "tolerance": parity.get("tolerance"),
             "fp16 weights vs float32": drift.get(k)} for k, v in parity["max_error"].items()]
    table = pd.DataFrame(rows)
    return table if drift else table.drop(columns="fp16 weights vs float32")


def _predictions(insp) -> list[str]:
    """What the model predicts, as short strings: every mask's top 5, else the next token after the text."""
    if insp.masks:
        return [" ".join(f"{p.token} {p.prob:.3f}" for p in m.predictions[:5]) for m in insp.masks]
    if insp.next_tokens is not None:
        return [" ".join(f"{t} {p:.3f}" for t, p in zip(insp.next_tokens[-1][:5], insp.next_probs[-1][:5]))]
    return []


def _side_by_side(torch_model, onnx_model, text: str) -> None:
    a = common.inspect_text(torch_model, text, summaries=False)
    b = common.inspect_text(onnx_model, text, summaries=False)
    if a is None or b is None:
        return
    same_tokens = [t.id for t in a.tokens] == [t.id for t in b.tokens]
    rows = [{"check": "same tokens", "torch": f"{len(a.tokens)} tokens", "onnx": f"{len(b.tokens)} tokens", "result": "yes" if same_tokens else "NO"},
            {"check": "hidden-state norms, max |difference|", "torch": "", "onnx": "",
             "result": f"{float(np.nanmax(np.abs(a.hidden_norms - b.hidden_norms))):.2e}"}]
    if a.has_attention and b.has_attention:
        diff = max(float(np.abs(a.attention_layer(l).astype(np.float32) - b.attention_layer(l).astype(np.float32)).max())
                   for l in range(a.num_layers))
        rows.append({"check": "attention (fp16 maps), every layer and head, max |difference|", "torch": "", "onnx": "", "result": f"{diff:.2e}"})
    for i, (pa, pb) in enumerate(zip(_predictions(a), _predictions(b))):
        rows.append({"check": f"predictions {i + 1}", "torch": pa, "onnx": pb, "result": "same" if pa == pb else "differ"})
    # the verdict next to the check: the predictions' text is long and pushed a last column off-screen
    st.dataframe(pd.DataFrame(rows, columns=["check", "result", "torch", "onnx"]), hide_index=True,
                 column_config={"check": st.column_config.TextColumn(width="medium"),
                                "result": st.column_config.TextColumn(width="small")})
    if b.has_attention:
        c = st.columns(2)
        with c[0]:
            layer = state.slider("Layer", "layer", 0, b.num_layers - 1, 0)
        with c[1]:
            head = state.slider("Head", "head", 0, b.num_heads - 1, 0)
        common.show(attention_heatmap(b, layer, head), "onnx-attention")
    else:
        st.info(b.unavailable.get("attention", "The exported graph has no attention output."))


def render() -> None:
    st.title("Export to ONNX")
    loaded = common.model_picker(prefer=common.prefers("attention"))
    text = state.text_input("Text to check the exported model on", "text", common.DEFAULT_TEXT, area=True, height=80)
    if loaded is None:
        return
    if loaded.info.backend != "torch":
        st.warning(f"{loaded.info.name} runs on the {loaded.info.backend} backend: only transformers models "
                   "can be exported to ONNX.")
        return
    from model.onnx.export import refusal

    why = refusal(loaded.info.model_type)
    if why:
        st.warning(f"{loaded.info.name} cannot be exported to ONNX: it is {why}.")
        return
    c = st.columns(2)
    with c[0]:
        opset = int(state.number_input("ONNX opset", "opset", 14, 20, DEFAULT_OPSET))
    with c[1]:
        fp16 = state.toggle("fp16 weights (half the file; computed in float32)", "fp16", False)
    out = export_path(loaded.info, opset, fp16)
    exists = out.is_file()
    st.caption(f"Output: `{out}`" + (" (already exported)" if exists else ""))
    st.button("Export" if not exists else "Exported: export again not needed", type="primary", disabled=exists,
              key="export_btn", on_click=_export, args=(loaded, out, opset, fp16))
    if "export_error" in st.session_state:
        st.error(st.session_state.pop("export_error"))
    if not out.is_file():
        st.info("The export traces the model with its attention maps and hidden states as outputs, runs the graph in "
                "onnxruntime on sample inputs and compares every output with torch before writing anything.")
        return
    lines = st.session_state.get("export_reports", {}).get(str(out))
    if lines:
        st.code(report_text(lines), language=None, wrap_lines=True)
    meta = _metadata(out)
    if meta is not None:
        table = _parity_table(meta)
        if table is not None:
            st.subheader("Parity measured at export")
            st.dataframe(table, hide_index=True)
        with st.expander("Metadata written beside the graph"):
            st.json(meta)
    st.subheader("Loaded back: ONNX against torch")
    onnx_model = common.load(str(out))
    if onnx_model is None:
        return
    st.caption(f"{onnx_model.info.name}: backend {onnx_model.info.backend}, {onnx_model.info.task}, "
               f"capabilities {', '.join(onnx_model.info.capabilities)}. Use its path as the model on the other pages: "
               f"`{out}`")
    _side_by_side(loaded, onnx_model, text)


render()
