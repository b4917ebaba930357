"""Generation: how a causal model picks its next token.

1. The next-token distribution after the prompt and how each sampling setting reshapes it, stage by stage
   (repetition penalty -> temperature -> top-k -> top-p -> min-p -> typical-p, transformers' order), on the
   full vocabulary.
2. Step by step: one token per click, its candidates and the pick; the growing text lives in the session.
3. Greedy vs sampling vs beam search side by side, and the beam-search tree.
4. Attention over the generated tokens (prompt + continuation inspected, one head at a time).

Keys: `temperature`, `top_k`, `top_p`, `typical_p`, `min_p`, `repetition_penalty`, `seed`, `new_tokens`,
`beams`, `mode` (step by step: sample | greedy), `source` (attention: which text), `layer`, `head`
(plus `model`, `text`).
"""
from __future__ import annotations

import html

import streamlit as st

from app import common, state
from app.figures import beam_tree, generation as F, style
from app.widgets import saliency
from model.errors import LmscopeError
from model.generate import SamplingConfig, generate, next_token_distribution

DEFAULT_PROMPT = common.DEFAULT_TEXT
MAX_STEPS = 64  # step-by-step tokens kept per session (each click re-reads the whole text)
STAGE_BARS = 15  # tokens per stage row


def _names(loaded):
    """id -> token string. The page asks the tokenizer itself here: model/ has no token-name helper yet."""
    return lambda ids: loaded.tokenizer.convert_ids_to_tokens(ids)


def _font() -> int:
    """The figures' type size: common.show enlarges it in lecture mode, and the stage chart and the beam
    tree size their rows and gaps from it."""
    return style.LECTURE_FONT if state.current("lecture", False) else style.BASE_FONT


def _eos_id(loaded) -> int | None:
    """The end-of-text id (same caveat as `_names`)."""
    return loaded.tokenizer.eos_token_id


def _settings(vocab: int) -> dict:
    """The sampling widgets, in pipeline order; returns generate()'s keyword arguments. In lecture mode
    they fold into an expander whose label says the settings, so the figures start on the first screen."""
    if state.current("lecture", False):
        with st.expander(f"Sampling settings: {_summary()}"):
            return _setting_widgets(vocab)
    st.subheader("Sampling settings")
    return _setting_widgets(vocab)


SETTING_DEFAULTS = {"temperature": 1.0, "repetition_penalty": 1.0, "top_k": 0, "top_p": 0.9, "typical_p": 1.0,
                    "min_p": 0.0, "new_tokens": 20, "beams": 4}
SETTING_OFF = {"repetition_penalty": 1.0, "top_k": 0, "top_p": 1.0, "typical_p": 1.0, "min_p": 0.0}


def _summary() -> str:
    """The settings in a few words: temperature, the filters that are on, tokens and beams."""
    v = {k: state.current(k, d) for k, d in SETTING_DEFAULTS.items()}
    on = [f"{k.replace('_', '-')} {v[k]:g}" for k, off in SETTING_OFF.items() if v[k] != off]
    return ", ".join([f"temperature {v['temperature']:g}", *on, f"{v['new_tokens']} tokens", f"{v['beams']} beams"])


def _setting_widgets(vocab: int) -> dict:
    c = st.columns(3)
    with c[0]:
        temperature = state.slider("Temperature", "temperature", 0.05, 3.0, SETTING_DEFAULTS["temperature"], step=0.05,
                                   help="Divides the logits: < 1 sharpens the distribution, > 1 flattens it")
        repetition_penalty = state.slider("Repetition penalty", "repetition_penalty", 1.0, 3.0, 1.0, step=0.05,
                                          help="Pushes down tokens already in the text (1 = off)")
    with c[1]:
        top_k = state.number_input("Top-k (0 = off)", "top_k", 0, vocab, 0, help="Keep only the k most probable tokens")
        # default 0.9, not off: greedy decoding loops on small models and plain sampling wanders off
        top_p = state.slider("Top-p (nucleus)", "top_p", 0.05, 1.0, SETTING_DEFAULTS["top_p"], step=0.05,
                             help="Keep the smallest set of best tokens whose mass reaches p (1 = off)")
    with c[2]:
        typical_p = state.slider("Typical-p", "typical_p", 0.05, 1.0, 1.0, step=0.05,
                                 help="Keep tokens whose surprisal is closest to the distribution's entropy (1 = off)")
        min_p = state.slider("Min-p", "min_p", 0.0, 0.5, 0.0, step=0.01,
                             help="Drop tokens below min-p x the best token's probability (0 = off)")
    c = st.columns(3)
    with c[0]:
        seed = state.number_input("Seed", "seed", 0, 2**31 - 1, 0, help="Same seed and settings, same sample")
    with c[1]:
        new_tokens = state.slider("New tokens", "new_tokens", 1, 64, SETTING_DEFAULTS["new_tokens"])
    with c[2]:
        beams = state.slider("Beams (beam search)", "beams", 1, 8, SETTING_DEFAULTS["beams"])
    return dict(temperature=temperature, top_k=int(top_k), top_p=top_p, typical_p=typical_p, min_p=min_p,
                repetition_penalty=repetition_penalty, seed=int(seed), max_new_tokens=int(new_tokens), num_beams=int(beams))


def _sampling_kwargs(s: dict) -> dict:
    return {k: s[k] for k in ("temperature", "top_k", "top_p", "typical_p", "min_p", "repetition_penalty")}


# ---------------------------------------------------------------------------------------------------


def _distribution(loaded, prompt: str, s: dict) -> None:
    st.markdown("The model's distribution over its whole vocabulary for the next token, then what each active "
                "setting does to it. Bars: the best tokens **in the order the previous stage ranked them**; grey "
                "ghosts were removed by this stage; the dashed line is the cut-off.")
    try:
        with st.spinner("Next-token distribution…"):
            stages, candidates = next_token_distribution(loaded, prompt, SamplingConfig(**_sampling_kwargs(s)))
    except LmscopeError as e:
        st.error(str(e))
        return
    common.show(F.stage_figure(stages, _names(loaded), top_n=STAGE_BARS, font_size=_font()), "sampling-stages")
    final = stages[-1]
    st.caption(f"After every filter {final.kept} of {len(final.probs)} tokens can still be sampled; "
               f"the best has p = {candidates[0].prob:.3f}." if candidates else "")
    saliency.panel(loaded, prompt, {None: [c.token for c in candidates]}, title="Why these candidates?")


def _step_state(loaded, prompt: str) -> dict:
    """This session's step-by-step text; starts over when the model or the prompt changes."""
    ss = st.session_state
    cur = ss.get("gen_steps")
    if not cur or cur["model"] != loaded.info.path or cur["prompt"] != prompt:
        cur = ss["gen_steps"] = {"model": loaded.info.path, "prompt": prompt, "pieces": [], "steps": [], "ended": False}
    return cur


def _next_token(loaded, cur: dict, mode: str, s: dict) -> None:
    """Button callback (runs before the script, so a click survives any rerun): append one token."""
    full = cur["prompt"] + "".join(cur["pieces"])
    try:
        r = generate(loaded, full, strategy=mode, max_new_tokens=1, seed=s["seed"] + len(cur["steps"]), **_sampling_kwargs(s))
    except LmscopeError as e:
        cur["error"] = str(e)
        return
    cur["steps"].append(r.steps[0])
    cur["pieces"].append(r.text)
    cur["ended"] = r.steps[0].pick.id == _eos_id(loaded) or bool(r.warnings)
    cur["warnings"] = r.warnings


def _undo(cur: dict) -> None:
    if cur["steps"]:
        cur["steps"].pop()
        cur["pieces"].pop()
    cur["ended"] = False


def _reset(cur: dict) -> None:
    cur["steps"], cur["pieces"], cur["ended"] = [], [], False


def _step_by_step(loaded, prompt: str, s: dict) -> str:
    """Returns prompt + the text generated so far."""
    cur = _step_state(loaded, prompt)
    mode = state.radio("Pick by", "mode", ("sample", "greedy"), "sample",
                       help="sample: draw from the filtered distribution (seed + step number); greedy: the best token")
    c = st.columns([1, 1, 1, 3])
    c[0].button("Next token", type="primary", disabled=cur["ended"] or len(cur["steps"]) >= MAX_STEPS, key="gen_next",
                on_click=_next_token, args=(loaded, cur, mode, dict(s)))
    c[1].button("Undo", disabled=not cur["steps"], key="gen_undo", on_click=_undo, args=(cur,))
    c[2].button("Reset", disabled=not cur["steps"], key="gen_reset", on_click=_reset, args=(cur,))
    if cur.get("error"):
        st.error(cur.pop("error"))
    for w in cur.pop("warnings", []):
        st.warning(w)
    full = prompt + "".join(cur["pieces"])
    st.markdown(f"**{len(cur['steps'])} tokens generated**" + (" (ended)" if cur["ended"] else ""))
    st.html('<div style="font-family:monospace;white-space:pre-wrap;border:1px solid #ddd;padding:.5em">'
            f'<span style="color:#666">{html.escape(prompt)}</span>'
            + "".join(f'<b title="p = {st_.pick.prob:.4f}">{html.escape(p)}</b>' for p, st_ in zip(cur["pieces"], cur["steps"]))
            + "</div>")
    if cur["steps"]:
        last = cur["steps"][-1]
        common.show(F.candidates_figure(last.candidates, last.pick,
                                        title=f"step {len(cur['steps'])}: candidates after the filters, pick in red"),
                    "step-candidates", download=False)
        st.dataframe(F.step_table(cur["steps"]), hide_index=True)
    return full


def _signature(loaded, prompt: str, s: dict) -> tuple:
    return (loaded.info.path, prompt, tuple(sorted(s.items())))


def _run_strategies(loaded, prompt: str, s: dict, sig: tuple) -> None:
    """Button callback: greedy, sampling and beam search on the same prompt."""
    results, errors = {}, {}
    for strategy in ("greedy", "sample", "beam"):
        try:
            results[strategy] = generate(loaded, prompt, strategy=strategy, max_new_tokens=s["max_new_tokens"],
                                         num_beams=s["num_beams"], seed=s["seed"], **_sampling_kwargs(s))
        except LmscopeError as e:
            errors[strategy] = str(e)
    st.session_state["gen_compare"] = {"sig": sig, "results": results, "errors": errors}


def _strategies(loaded, prompt: str, s: dict) -> dict | None:
    """Greedy, sampling and beam search on the same prompt (on request: beam search runs num_beams sequences)."""
    ss = st.session_state
    sig = _signature(loaded, prompt, s)
    st.button("Generate with all three", type="primary", key="gen_compare_btn", on_click=_run_strategies,
              args=(loaded, prompt, dict(s), sig))
    cur = ss.get("gen_compare")
    if not cur or cur["sig"][:2] != sig[:2]:
        st.info("Press the button to continue the prompt greedily, by sampling (your seed and filters) and by beam search.")
        return None
    if cur["sig"] != sig:
        st.caption("The settings changed since these were generated: press the button again to update them.")
    cols = st.columns(3)
    titles = {"greedy": "Greedy (always the best token)", "sample": "Sampling (seeded, filtered)",
              "beam": f"Beam search ({s['num_beams']} beams)"}
    for col, strategy in zip(cols, ("greedy", "sample", "beam")):
        with col:
            st.markdown(f"**{titles[strategy]}**")
            if strategy in cur["errors"]:
                st.error(cur["errors"][strategy])
                continue
            r = cur["results"][strategy]
            st.html('<div style="font-family:monospace;white-space:pre-wrap">'
                    f'<span style="color:#666">{html.escape(r.prompt)}</span><b>{html.escape(r.text)}</b></div>')
            if r.steps:
                probs = [st_.pick.prob for st_ in r.steps]
                st.caption(f"mean p of the picks {sum(probs) / len(probs):.3f}; lowest {min(probs):.3f}")
            elif "beam_score" in r.settings:
                st.caption(f"beam score (length-normalised log p) {r.settings['beam_score']:.3f}")
            for w in r.warnings:
                st.warning(w)
    return cur["results"]


def _beam_tree(results: dict | None) -> None:
    if not results or "beam" not in results:
        st.info("Generate with all three strategies first (the tab before): the tree comes from its beam search.")
        return
    r = results["beam"]
    st.markdown("Every hypothesis beam search expanded: **kept** ones ran on, **pruned** ones fell out of the best "
                "beams, **ended** ones stopped (end of text or length) without being returned, **finished** ones "
                "are returned; the thick line is the best.")
    path = beam_tree.best_path(r.beam_tree, [i for _, i in r.tokens])
    full = st.toggle(f"Every hypothesis ({len(r.beam_tree)} nodes)", key="gen_full_tree",
                     help="Off: only the final beams' ancestry, each run of tokens without a branch as one label")
    nodes = r.beam_tree if full else beam_tree.compact_tree(r.beam_tree, path)
    if not full:
        st.caption(f"The final beams and where they branched ({len(nodes)} of {len(r.beam_tree)} nodes); pruned and "
                   "ended side branches are hidden: switch on 'Every hypothesis' to see them.")
    common.show(beam_tree.beam_tree_figure(nodes, path, font_size=_font(), compact=not full), "beam-tree")


def _attention(loaded, prompt: str, stepped: str, results: dict | None) -> None:
    if "attention" not in loaded.info.capabilities:
        st.info(loaded.info.unavailable.get("attention", "This model has no attention."))
        return
    sources = {}
    if stepped != prompt:
        sources["step by step"] = stepped
    for name, r in (results or {}).items():
        sources[name] = r.prompt + r.text
    if not sources:
        st.info("Generate some tokens (step by step, or with all three strategies) to see attention over them.")
        return
    source = state.radio("Text", "source", list(sources), list(sources)[0])
    text = sources[source]
    insp = common.inspect_text(loaded, text, summaries=False)
    if insp is None or not insp.has_attention:
        return
    c = st.columns(2)
    with c[0]:
        layer = state.slider("Layer", "layer", 0, insp.num_layers - 1, 0)
    with c[1]:
        head = state.slider("Head", "head", 0, insp.num_heads - 1, 0)
    st.caption("Rows attend to columns; the dashed lines separate the prompt from the generated tokens.")
    common.show(F.generated_attention_figure(insp.attention(layer, head), insp.tokens, len(prompt),
                                             title=f"layer {layer}, head {head}"), "generated-attention")


def render() -> None:
    st.title("Generation")
    loaded = common.model_picker(need="causal", prefer=common.prefers("causal"))
    prompt = state.text_input("Prompt", "text", DEFAULT_PROMPT, area=True, height=80)
    if loaded is None:
        return
    if not prompt.strip():
        st.error("The prompt is empty: type the beginning of a text above.")
        return
    s = _settings(loaded.info.vocab_size)
    tabs = st.tabs(["Next-token distribution", "Step by step", "Greedy vs sampling vs beam", "Beam-search tree",
                    "Attention over generated tokens"])
    with tabs[0]:
        _distribution(loaded, prompt, s)
    with tabs[1]:
        stepped = _step_by_step(loaded, prompt, s)
    with tabs[2]:
        results = _strategies(loaded, prompt, s)
    with tabs[3]:
        _beam_tree(results)
    with tabs[4]:
        _attention(loaded, prompt, stepped, results)


render()
