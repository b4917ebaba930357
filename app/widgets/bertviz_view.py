"""bertviz's head view and model view as ONE self-contained HTML page that works offline.

bertviz (`head_view(..., html_action="return")`) emits HTML that loads require.js, d3 5.7 and jQuery
2.0 from a CDN, so it is blank without internet, and its Python side imports torch. Here we build the
same `params` object bertviz builds (same keys, same sentence-pair filters, same token prettifying),
run bertviz's own `head_view.js` / `model_view.js` on it (minus its `require.config` block of CDN
paths), and inline the libraries from PyPI packages:

    jQuery  <- XStatic-jQuery 3.7.1.1   (bertviz asks for 2.0.0; it only uses $(...).on/.empty/.append/.val)
    d3      <- XStatic-D3 3.5.17.1      (bertviz asks for 5.7.0; its views use select/enter/append/attr/
                                         style/on and d3.hsl, all in d3 3; `schemeCategory10` and, for the
                                         neuron view, `line()` (= d3 3's `svg.line()`) are added)
    require <- not needed: a 4-line shim hands the two globals to bertviz's `requirejs([...], fn)` call.

Escaping: tokens travel inside a JSON object in a <script>; `<`, `>`, `&` and U+2028/9 are written as
\\u escapes, so a `</script>` typed by a user can never close the tag. bertviz's JS writes tokens with
d3's `.text()`, never as HTML.

bertviz's neuron view (each token's query and key vectors) lives in `app.widgets.neuron_view`, built on
the helpers here.

Size: bertviz sends every layer's every head (L*H*N*N weights). We offer it only up to `MAX_TOKENS`
tokens and round weights to 4 decimals (12 x 12 heads at 64 tokens: ~4 MB).

    >>> page = bertviz_html(inspection, view="head")          # doctest: +SKIP
    >>> "cdnjs" in page                                        # doctest: +SKIP
    False
"""
from __future__ import annotations

import importlib.util
import json
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from model.errors import Unavailable
from model.results import Inspection

MAX_TOKENS = 64  # bertviz puts all L*H*N*N weights in the page: ~1 MB per 1000 weights of JSON
DECIMALS = 4  # weights are rounded to this many decimals (bertviz's own output keeps ~17 digits)

# requirejs([...], fn) gets the two globals; d3 4+ names bertviz uses are mapped to their d3 3 equals
# (`schemeCategory10`: head/model view colours; `line()`: the neuron view's query -> key connectors).
SHIM = """
window.require = window.require || {config: function () {}};
window.requirejs = function (deps, fn) {
  var mods = {jquery: window.jQuery, d3: window.d3};
  return fn.apply(null, deps.map(function (d) { return mods[d]; }));
};
if (window.d3 && !window.d3.schemeCategory10) { window.d3.schemeCategory10 = window.d3.scale.category10().range(); }
if (window.d3 && !window.d3.line) { window.d3.line = function () { return window.d3.svg.line(); }; }
"""


class BertvizUnavailable(Unavailable):
    """The view cannot be drawn (input too long, no attention, library files missing)."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates the package without importing it (bertviz imports torch)
    if spec is None or not spec.submodule_search_locations:
        raise BertvizUnavailable(f"the {name} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def library_sources() -> dict[str, str]:
    """The JavaScript of jQuery and d3 from their XStatic packages: {"jquery": ..., "d3": ...}."""
    files = {"jquery": ("xstatic.pkg.jquery", "data/jquery.min.js"), "d3": ("xstatic.pkg.d3", "data/d3.js")}
    out = {}
    for name, (pkg, rel) in files.items():
        try:
            path = _package_dir(pkg) / rel
        except ModuleNotFoundError:
            path = None
        if path is None or not path.is_file():
            raise BertvizUnavailable(f"{pkg} is missing ({rel}): install XStatic-jQuery and XStatic-D3 for offline bertviz views")
        out[name] = path.read_text(encoding="utf-8")
    return out


def bertviz_script(view: str) -> str:
    """bertviz's own head_view.js / model_view.js / neuron_view.js without its `require.config` block (CDN paths)."""
    if view not in ("head", "model", "neuron"):
        raise BertvizUnavailable(f"unknown bertviz view {view!r}: use 'head', 'model' or 'neuron'")
    path = _package_dir("bertviz") / f"{view}_view.js"
    if not path.is_file():
        raise BertvizUnavailable(f"bertviz is installed without {path.name}")
    return re.sub(r"require\.config\(\{.*?\}\);", "", path.read_text(encoding="utf-8"), count=1, flags=re.S)


def prettify(tokens: list[str]) -> list[str]:
    """bertviz's `format_special_chars`: GPT-2's `Ġ` and SentencePiece's `▁` become spaces."""
    return [t.replace("Ġ", " ").replace("▁", " ").replace("</w>", "") for t in tokens]


def script_json(obj: Any) -> str:
    """JSON that is safe inside a <script> element.

        >>> script_json({"t": "</script><b>"})
        '{"t": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    s = json.dumps(obj, ensure_ascii=False)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, rep)
    return s


def attention_params(insp: Inspection, view: str = "head", layer: int | None = None,
                     display_mode: str = "light") -> dict[str, Any]:
    """The `params` object bertviz's JS reads, built like bertviz's Python builds it (minus torch)."""
    n = len(insp.tokens)
    if not insp.has_attention:
        raise BertvizUnavailable(insp.unavailable.get("attention", "this model has no attention"))
    if n > MAX_TOKENS:
        raise BertvizUnavailable(f"bertviz views are offered up to {MAX_TOKENS} tokens (they carry every head's full map); "
                                 f"this input has {n}: use the heatmap and head view above")
    attn = np.stack([insp.attention_layer(l).astype(np.float32) for l in range(insp.num_layers)])  # (L, H, N, N)
    attn = attn.astype(np.float64).round(DECIMALS)  # a rounded float32 prints as 0.12349999696016312 in JSON
    tokens = [t.text for t in insp.tokens]
    b_start = next((i for i, t in enumerate(insp.tokens) if t.segment == 1), None)
    data = [{"name": None if b_start is None else "All", "attn": attn.tolist(), "left_text": tokens, "right_text": tokens}]
    if b_start is not None:
        a, b = slice(0, b_start), slice(b_start, n)
        for name, left, right in (("Sentence A -> Sentence A", a, a), ("Sentence B -> Sentence B", b, b),
                                  ("Sentence A -> Sentence B", a, b), ("Sentence B -> Sentence A", b, a)):
            data.append({"name": name, "attn": attn[:, :, left, right].tolist(), "left_text": tokens[left],
                         "right_text": tokens[right]})
    for d in data:
        d["left_text"], d["right_text"] = prettify(d["left_text"]), prettify(d["right_text"])
    root = "bertviz-" + uuid.uuid4().hex
    layers = list(range(insp.num_layers))
    if view == "head":
        return {"attention": data, "default_filter": "0", "root_div_id": root, "layer": layer, "heads": None,
                "include_layers": layers}
    return {"attention": data, "default_filter": "0", "display_mode": display_mode, "root_div_id": root,
            "include_layers": layers, "include_heads": list(range(insp.num_heads)), "total_heads": insp.num_heads}


def bertviz_html(insp: Inspection, view: str = "head", layer: int | None = None) -> str:
    """A complete offline HTML page with bertviz's head or model view of `insp`."""
    script = bertviz_script(view)
    params = attention_params(insp, view, layer)
    libs = library_sources()
    select = ""
    if len(params["attention"]) > 1:
        options = "".join(f'<option value="{i}">{d["name"]}</option>' for i, d in enumerate(params["attention"]))
        select = f'Attention: <select id="filter">{options}</select>'
    layer_select = "Layer: <select id=\"layer\"></select>" if view == "head" else ""
    body = (f'<div id="{params["root_div_id"]}" style="font-family: \'Helvetica Neue\', Helvetica, Arial, sans-serif;">'
            f'<span style="user-select: none">{layer_select} {select}</span><div id="vis"></div></div>')
    js = script.replace("PYTHON_PARAMS", script_json(params))
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>bertviz</title></head><body>"
        f"{body}"
        f"<script>{libs['jquery']}</script>\n<script>{libs['d3']}</script>\n<script>{SHIM}</script>\n"
        f"<script>{js}</script></body></html>"
    )


def frame_height(insp: Inspection, view: str) -> int:
    """Pixels the iframe needs (bertviz sizes its SVG from the token count)."""
    n = len(insp.tokens)
    if view == "head":
        return int(n * 22.5 + 120)
    rows = n * 7 * (12 / max(1, insp.num_heads)) + 10  # bertviz's thumbnail height per layer
    return int(max(insp.num_layers * rows + 60, n * 18 + 90) + 40)
