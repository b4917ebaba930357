"""What a model can show, from facts known before it runs: the tables and rules `model.load` and the
backends use to fill `ModelInfo.capabilities` / `unavailable`, kept here without torch so that
`model.describe` (the Models page's description before the engine is loaded) computes exactly the same.

    >>> caps, task = transformers_capabilities("BertForPreTraining", num_heads=4)
    >>> sorted(caps), task
    (['attention', 'hidden', 'lens', 'mlm', 'nsp'], 'pretraining')
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# What each view shows; `unavailable` explains the views a model lacks.
VIEWS = {
    "attention": "attention maps",
    "mlm": "masked-token predictions",
    "causal": "next-token predictions and generation",
    "nsp": "next-sentence prediction",
    "sop": "sentence-order prediction",
    "lens": "logit lens",
    "hidden": "hidden-state norms",
}

# ---------------------------------------------------------------------------------------------------
# transformers models (the torch backend). model.backends.torch_backend keys its head functions by these.

MLM_ARCHITECTURES = frozenset({
    "BertForMaskedLM", "BertForPreTraining", "RobertaForMaskedLM", "AlbertForMaskedLM", "AlbertForPreTraining",
    "DistilBertForMaskedLM",
})
CAUSAL_ARCHITECTURES = frozenset({"GPT2LMHeadModel"})
PAIR_KINDS = {"BertForPreTraining": "nsp", "AlbertForPreTraining": "sop"}  # architecture -> its sentence-pair head
BASE_MODELS = frozenset({"BertModel", "RobertaModel", "AlbertModel", "DistilBertModel", "GPT2Model"})
SUPPORTED = MLM_ARCHITECTURES | CAUSAL_ARCHITECTURES | BASE_MODELS
# The bare encoder loaded when config.json names no supported architecture.
BASE_BY_TYPE = {"bert": "BertModel", "roberta": "RobertaModel", "albert": "AlbertModel",
                "distilbert": "DistilBertModel", "gpt2": "GPT2Model"}


def choose_architecture(model_type: str, architectures: list | None) -> tuple[str, list[str]]:
    """(the transformers class `model.load` instantiates, its warnings) for a config's `architectures`."""
    archs = architectures or []
    arch = next((a for a in archs if a in SUPPORTED), None)
    warnings: list[str] = []
    if arch is None:
        base = BASE_BY_TYPE[model_type]
        if archs:
            warnings.append(f"head {archs[0]} is not supported; loaded the bare encoder {base}")
        arch = base
    return arch, warnings


def transformers_capabilities(arch: str, num_heads: int, has_attention: bool = True, *, task: str | None = None,
                              has_lm_head: bool = True, has_lens: bool = True) -> tuple[set[str], str]:
    """(capabilities, task) of a transformers model of class `arch` on the torch backend. `task`: the one
    model.families chose from transformers' Auto mappings (None: from the seed lists above, which is what
    model.describe knows); has_lm_head / has_lens: whether the load found and checked the head and the norm."""
    if task is None:
        pair_kind = PAIR_KINDS.get(arch)
        task = ("pretraining" if pair_kind else "masked-lm") if arch in MLM_ARCHITECTURES else (
            "causal-lm" if arch in CAUSAL_ARCHITECTURES else "encoder")
    pair_kind = PAIR_KINDS.get(arch) if task == "pretraining" else None
    caps = {"hidden"}
    if has_attention and num_heads:
        caps.add("attention")
    if has_lm_head and task in ("masked-lm", "pretraining"):
        caps.add("mlm")
    if has_lm_head and task == "causal-lm":
        caps.add("causal")
    if has_lm_head and has_lens and task != "encoder":
        caps.add("lens")
    if pair_kind:
        caps.add(pair_kind)
    return caps, task


ELMO_CAPABILITIES = frozenset({"hidden", "causal", "elmo"})


def unavailable_views(name: str, model_type: str, task: str, caps) -> dict[str, str]:
    """View -> why `name` cannot show it (every view of VIEWS not in `caps`)."""
    unavailable = {v: f"{desc}: {name} ({task} model) has no head or output for this"
                   for v, desc in VIEWS.items() if v not in caps}
    if "attention" not in caps:
        unavailable["attention"] = f"{name} has no attention layers ({model_type})" if model_type == "lmscope-elmo" \
            else f"{name} exposes no attention outputs"
    return unavailable


# ---------------------------------------------------------------------------------------------------
# ONNX graphs (model.backends.onnx_backend): what each graph output holds, and what that lets a model show.

ONNX_FORMAT = "lmscope-onnx"  # the `format` field of FILE.lmscope.json (model.onnx.export writes it)
LOGITS_NAMES = ("logits", "prediction_logits")
PAIR_NAMES = {"pair_logits": None, "seq_relationship_logits": "nsp", "sop_logits": "sop"}
PER_LAYER_ATTENTION = re.compile(r"(?:attentions?|attn|attention_probs|attention_weights)[._]?(\d+)")
PER_LAYER_HIDDEN = re.compile(r"hidden_states?[._](\d+)")


@dataclass(frozen=True)
class GraphLayout:
    """Which graph outputs hold what. `attentions` / `hidden_states` name one stacked output (layer first)
    or one output per layer, in layer order."""

    logits: str | None = None
    last_hidden: str | None = None
    attentions: tuple[str, ...] = ()
    attentions_stacked: bool = False
    hidden_states: tuple[str, ...] = ()
    hidden_stacked: bool = False
    pair: str | None = None
    pair_kind: str | None = None

    @property
    def outputs(self) -> list[str]:
        names = [self.logits, self.last_hidden, *self.attentions, *self.hidden_states, self.pair]
        return [n for n in names if n]


def infer_layout(ranks: dict[str, int]) -> GraphLayout:
    """Graph output name -> rank (0 when unknown) => what each output holds.

        >>> infer_layout({"logits": 3, "attentions.1": 4, "attentions.0": 4}).attentions
        ('attentions.0', 'attentions.1')
    """
    def per_layer(pattern) -> tuple[str, ...]:
        found = {int(m.group(1)): n for n in ranks if (m := pattern.fullmatch(n))}
        return tuple(found[i] for i in sorted(found))

    att_stacked = "attentions" in ranks and ranks["attentions"] in (0, 5)
    hid_stacked = "hidden_states" in ranks and ranks["hidden_states"] in (0, 4)
    pair = next((n for n in PAIR_NAMES if n in ranks), None)
    return GraphLayout(
        logits=next((n for n in LOGITS_NAMES if n in ranks), None),
        last_hidden="last_hidden_state" if "last_hidden_state" in ranks else None,
        attentions=("attentions",) if att_stacked else per_layer(PER_LAYER_ATTENTION),
        attentions_stacked=att_stacked,
        hidden_states=("hidden_states",) if hid_stacked else per_layer(PER_LAYER_HIDDEN),
        hidden_stacked=hid_stacked,
        pair=pair, pair_kind=PAIR_NAMES.get(pair) if pair else None,
    )


def logits_from_head_graph(layout: GraphLayout, has_head_graph: bool) -> bool:
    """Whether the loader drops the graph's whole-sequence `logits` output (and the nodes only it needs) and
    computes logits with FILE.head.onnx at the positions a view asks for."""
    return has_head_graph and layout.logits is not None and bool(layout.hidden_states or layout.last_hidden)


def missing_head_warning(head_file: str) -> str:
    """The load warning for an lmscope export whose FILE.head.onnx is gone."""
    return f"{head_file} (the LM head) is missing: no logit lens, and logits come from the whole graph"


def missing_decoder_warning(decoder_file: str) -> str:
    """The load warning for an lmscope export of a causal LM whose FILE.decoder.onnx is gone."""
    return f"{decoder_file} (generation with a key/value cache) is missing: generation recomputes the prefix at every step"


def onnx_capabilities(layout: GraphLayout, task: str, name: str, *, num_heads: int, has_lm_head: bool,
                      has_head_graph: bool, pair_kind: str | None) -> tuple[set[str], dict[str, str]]:
    """(capabilities, view -> why not) of an ONNX graph with this layout; `has_head_graph`: the separate
    LM-head graph (FILE.head.onnx) is loaded; `has_lm_head`: logits come from it or from the graph."""
    caps: set[str] = set()
    reasons: dict[str, str] = {}
    if layout.attentions and num_heads:
        caps.add("attention")
    else:
        reasons["attention"] = (f"{name}'s ONNX graph has no attention outputs (export it with `lmscope export-onnx` "
                                "to keep them); the other views still work")
    if layout.hidden_states:
        caps.add("hidden")
    else:
        reasons["hidden"] = f"{name}'s ONNX graph has no per-layer hidden_states output"
    if has_lm_head:
        if task in ("masked-lm", "pretraining"):
            caps.add("mlm")
        elif task == "causal-lm":
            caps.add("causal")
        if task != "encoder":
            if has_head_graph:
                caps.add("lens")
            else:
                reasons["lens"] = (f"the logit lens needs the LM head outside the graph, which {name} does not have; "
                                   "export the model with `lmscope export-onnx` (it writes FILE.head.onnx)")
    if layout.pair and pair_kind:
        caps.add(pair_kind)
    return caps, reasons
