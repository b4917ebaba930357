"""bertviz's neuron view as ONE self-contained offline HTML page, drawn from lmscope's own queries and keys.

bertviz's `neuron_view.show` only works with bertviz's patched copies of BERT / GPT-2 / RoBERTa
(`bertviz.transformers_neuron_view`, which return each layer's queries and keys). Here the numbers come from
`model.inspect.neuron_data` (any torch model lmscope loads), and we build the object bertviz's
`neuron_view.js` reads (`window.bertviz_params`) the way `neuron_view.get_attention` and `show` build it:

    {"attention": {"all": {"attn":    [layer][head][query][key],   probabilities, rows sum to 1
                           "queries": [layer][head][token][dim],
                           "keys":    [layer][head][token][dim],
                           "left_text": tokens, "right_text": tokens},
                   # sentence pairs only, as bertviz: "aa", "bb", "ab", "ba"; "ab" = queries of A,
                   # keys of B, attn[:, :, A, B] (and left_text A, right_text B)
                  },
     "default_filter": "all", "root_div_id": "bertviz-<hex>", "bidirectional": not causal,
     "display_mode": "light", "layer": index into the layer lists, "head": head}

Libraries as in `bertviz_view`: jQuery and d3 3.5.17 from the XStatic packages, inlined, and the requirejs
shim. The neuron view calls one d3 function d3 3 lacks, `d3.line()` (d3 4+), for the query -> key
connectors; d3 3 has the same line generator as `d3.svg.line()` (same `.x()` / `.y()` accessors, linear by
default), so the shim maps one to the other. Everything else it uses (select / selectAll / data / enter /
append / attr / style / classed / text, and `.on` listeners called with (d, i)) is d3 3 as well; of jQuery
it uses `$(...).empty/.append/.val/.text/.change/.on`, all in jQuery 3.7.

Scores: bertviz's JS shows q . k / sqrt(d) in its "q . k" column and takes the softmax column from "attn".
Where a model multiplies q . k by something else than d ** -0.5, the queries are multiplied by
scale * sqrt(d) here, so the column shows the model's own score; "attn" is our attention, the very numbers
the heatmap shows.

Size: a layer carries H * N * (2d + N) numbers (sentence pairs about twice that). Every layer is sent when
that stays under `MAX_NUMBERS` (the view's own Layer menu then switches layers), otherwise only the page's
layer (the menu then lists that one layer, by its real index). Measured, whole page (0.43 MB of it jQuery
and d3): demo/bert (4 x 4 heads, d = 64) at its 48-token limit, all layers: 1.48 MB; demo/gpt2 at 64 tokens,
all layers: 1.86 MB. A 12 x 12 model at 64 tokens sends one layer: about 1.5 MB.

    >>> page = neuron_html(neuron_data(loaded, "the cat sleeps ."), layer=2, head=0)   # doctest: +SKIP
    >>> "cdnjs" in page                                                                 # doctest: +SKIP
    False
"""
from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from app.widgets import bertviz_view
from app.widgets.bertviz_view import SHIM, BertvizUnavailable, bertviz_script, library_sources, prettify, script_json
from model.results import NeuronView

VECTOR_DECIMALS = 3  # query / key elements: the view colours them by tanh(|x| / 4)
ATTENTION_DECIMALS = 4
MAX_NUMBERS = 400_000  # ~7 bytes each in JSON: about 3 MB of data per page at most
FILTERS = (("aa", "Sentence A -> Sentence A"), ("ab", "Sentence A -> Sentence B"), ("ba", "Sentence B -> Sentence A"),
           ("bb", "Sentence B -> Sentence B"))

MIN_SCALE = 0.75  # the neuron view shrinks to fit its frame down to this scale, then scrolls sideways

# After bertviz's script: fit its drawing into the frame. bertviz's SVG is "100%" wide, but its expanded view
# (query, key, q x k, q . k, softmax: ~1010 px) is wider than the frame on a 1400 px window and the SVG clips
# it. Each SVG it draws (it redraws on every menu change) gets a viewBox around its drawing (getBBox counts
# the hidden expanded group too, so the size holds in both states) and is scaled to the frame's width, down
# to MIN_SCALE; narrower than that, #vis scrolls sideways. Hover and click targets scale with the drawing.
_FIT = """
(function (root, minScale) {
  var vis = document.querySelector('#' + root + ' #vis');
  vis.style.overflowX = 'auto';
  function fit() {
    var svg = vis.querySelector('svg');
    if (!svg) return;
    if (!svg.dataset.w) {
      var box = svg.getBBox(), x0 = Math.min(0, Math.floor(box.x));
      svg.dataset.w = Math.ceil(box.x + box.width) - x0 + 4;
      svg.dataset.h = parseFloat(svg.getAttribute('height'));
      svg.setAttribute('viewBox', x0 + ' 0 ' + svg.dataset.w + ' ' + svg.dataset.h);
      svg.setAttribute('preserveAspectRatio', 'xMinYMin meet');
    }
    var w = +svg.dataset.w, h = +svg.dataset.h, k = Math.max(minScale, Math.min(1, vis.clientWidth / w));
    svg.setAttribute('width', Math.floor(w * k));
    svg.setAttribute('height', Math.ceil(h * k));
    svg.dataset.scale = k;
  }
  new MutationObserver(fit).observe(vis, {childList: true});
  window.addEventListener('resize', fit);
  fit();
})(%s, %s);
"""

# After bertviz's script: its Layer menu numbers the layers it was given 0, 1, ...; name them by model layer.
_RELABEL = """
(function (root, layers) {
  document.querySelectorAll('#' + root + ' #layer option').forEach(function (o) { o.textContent = layers[+o.value]; });
})(%s, %s);
"""


def _segments(view: NeuronView) -> dict[str, slice]:
    """'all' and, for a sentence pair, 'a' and 'b': the token positions of each part."""
    n = len(view.tokens)
    b_start = next((i for i, t in enumerate(view.tokens) if t.segment == 1), None)
    if b_start is None:
        return {"all": slice(0, n)}
    return {"all": slice(0, n), "a": slice(0, b_start), "b": slice(b_start, n)}


def numbers_per_layer(view: NeuronView) -> int:
    """How many numbers one layer puts in the page (every filter's queries, keys and maps)."""
    sizes = {k: s.stop - s.start for k, s in _segments(view).items()}
    d, pairs = view.head_dim, [("all", "all")]
    if "a" in sizes:
        pairs += [(f[0], f[1]) for f, _ in FILTERS]
    return view.num_heads * sum(sizes[q] * d + sizes[k] * d + sizes[q] * sizes[k] for q, k in pairs)


def sent_layers(view: NeuronView, layer: int) -> list[int]:
    """The model layers the page carries: all held layers if they fit in `MAX_NUMBERS`, else `layer` alone."""
    if layer not in view.layers:
        raise BertvizUnavailable(f"layer {layer} was not computed: layers {list(view.layers)}")
    if numbers_per_layer(view) * len(view.layers) <= MAX_NUMBERS:
        return list(view.layers)
    return [layer]


def _rounded(a: np.ndarray, decimals: int) -> list:
    # float64 before rounding: a rounded float32 prints as 0.12349999696016312 in JSON
    return np.asarray(a, dtype=np.float64).round(decimals).tolist()


def neuron_params(view: NeuronView, layer: int, head: int = 0, display_mode: str = "light") -> dict[str, Any]:
    """The `window.bertviz_params` object bertviz's neuron_view.js reads (see the module docstring)."""
    n = len(view.tokens)
    if n > bertviz_view.MAX_TOKENS:  # one limit for every bertviz view (read at call time)
        raise BertvizUnavailable(f"the neuron view is offered up to {bertviz_view.MAX_TOKENS} tokens; this input has {n}")
    if not 0 <= head < view.num_heads:
        raise BertvizUnavailable(f"head {head} is out of range: this model has heads 0..{view.num_heads - 1}")
    layers = sent_layers(view, layer)
    rows = [view.layers.index(l) for l in layers]
    # bertviz divides q . k by sqrt(d); fold the model's own scale into the queries so it shows the real score
    factor = (view.scale[rows] * np.sqrt(view.head_dim))[:, None, None, None]  # (L', 1, 1, 1)
    queries = view.queries[rows] * factor  # (L', H, N, d)
    keys = view.keys[rows]  # (L', H, N, d)
    attn = view.attention[rows]  # (L', H, N, N)
    tokens = prettify([t.text for t in view.tokens])
    seg = _segments(view)

    def part(q: str, k: str) -> dict[str, Any]:
        sq, sk = seg[q], seg[k]
        return {"attn": _rounded(attn[:, :, sq, sk], ATTENTION_DECIMALS),
                "left_text": tokens[sq], "right_text": tokens[sk],
                "queries": _rounded(queries[:, :, sq], VECTOR_DECIMALS),
                "keys": _rounded(keys[:, :, sk], VECTOR_DECIMALS)}

    data = {"all": part("all", "all")}
    if "a" in seg:
        data.update({name: part(name[0], name[1]) for name, _ in FILTERS})
    return {"attention": data, "default_filter": "all", "root_div_id": "bertviz-" + uuid.uuid4().hex,
            "bidirectional": not view.causal, "display_mode": display_mode, "layer": layers.index(layer),
            "head": head}


def neuron_html(view: NeuronView, layer: int, head: int = 0) -> str:
    """A complete offline HTML page with bertviz's neuron view of `view`, opened at (layer, head)."""
    script = bertviz_script("neuron")
    params = neuron_params(view, layer, head)
    libs = library_sources()
    root = params["root_div_id"]
    select = ""
    if len(params["attention"]) > 1:
        options = "".join(f'<option value="{k}">{name}</option>' for k, name in (("all", "All"), *FILTERS))
        select = f'<span class="dropdown-label">Attention: </span><select id="filter">{options}</select>'
    body = (f'<div id="{root}" style="padding:8px;font-family:\'Helvetica Neue\', Helvetica, Arial, sans-serif;">'
            '<span style="user-select:none"><span class="dropdown-label">Layer: </span><select id="layer"></select> '
            '<span class="dropdown-label">Head: </span><select id="att_head"></select> '
            f'{select}</span><div id="vis"></div></div>')
    js = (f"window.bertviz_params = {script_json(params)};\n{script}\n"
          + _RELABEL % (script_json(root), script_json(sent_layers(view, layer)))
          + _FIT % (script_json(root), MIN_SCALE))
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>bertviz neuron view</title></head><body>"
        f"{body}"
        f"<script>{libs['jquery']}</script>\n<script>{libs['d3']}</script>\n<script>{SHIM}</script>\n"
        f"<script>{js}</script></body></html>"
    )


def frame_height(view: NeuronView) -> int:
    """Pixels the iframe needs: bertviz's SVG is N * 26 + 100 px, under a row of menus. Scaled to fit, it is
    shorter; when #vis scrolls sideways (scale MIN_SCALE) it is shorter by more than its scrollbar."""
    return len(view.tokens) * 26 + 160
