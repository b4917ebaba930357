"""The commands that list the models and look at one: `lmscope models`, `tokenize`, `inspect`, `fill-mask`,
`generate`. Each prints JSON with --json (shapes documented in README) or lines for a person.
"""
from __future__ import annotations

from typing import Any

from app.cli.io import UserError, emit, load, read_text, rounded


def params(n: int) -> str:
    """A parameter count for the models table: 4.4M, 494.0M, 1.5B ('' when unknown)."""
    return "" if not n else f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def cmd_models(args):
    from model.registry import list_models

    entries = list_models()
    payload = {"models": [e.to_json() for e in entries]}

    def human():
        if not entries:
            return "no models found (demo models live in assets/models; train one with `lmscope train`)"
        w = max(len(e.name) for e in entries)
        return "\n".join(f"{e.name:<{w}}  {e.source:<8} {e.model_type:<12} {e.architecture:<24} "
                         f"{e.size_bytes / 1e6:7.1f} MB  {params(e.parameters):>7} {e.dtype:<8}  {e.note}" for e in entries)

    emit(args, payload, human)
    return 0


def cmd_tokenize(args):
    m = load(args.model)  # first: a refused load must not wait for torch's import
    from model.inspect import encode
    enc = encode(m, read_text(args), args.pair)
    payload = {"model": m.name, "tokens": [t.to_json() for t in enc.tokens], "num_tokens": len(enc.tokens),
               "warnings": enc.warnings}
    emit(args, payload, lambda: " ".join(f"{t.text}({t.id})" for t in enc.tokens))
    return 0


def cmd_inspect(args):
    m = load(args.model, args.dtype)  # first: a refused load must not wait for torch's import
    from model.inspect import inspect
    r = inspect(m, read_text(args), args.pair, top_k=args.top_k, pll=args.pll, logit_lens=args.logit_lens)
    asked_for_a_head = args.layer is not None or args.head is not None
    args.layer, args.head = args.layer or 0, args.head or 0
    payload: dict[str, Any] = {
        "model": m.name, "tokens": r.token_json(), "num_layers": r.num_layers, "num_heads": r.num_heads,
        "hidden_norms": [[rounded(v, 4) for v in row] for row in r.hidden_norms], "warnings": r.warnings,
        "unavailable": r.unavailable,
    }
    if r.has_attention:
        a = r.attention(args.layer, args.head)
        payload.update(layer=args.layer, head=args.head, attention=[[rounded(v) for v in row] for row in a])
        if r.head_summary is not None:
            hs = r.head_summary
            payload["summaries"] = {k: [[rounded(v, 4) for v in row] for row in getattr(hs, k)]
                                    for k in ("entropy", "distance", "special_share", "max_entropy")}
    elif asked_for_a_head:
        raise UserError(r.unavailable.get("attention", "this model has no attention"))
    payload["masks"] = [mp.to_json() for mp in r.masks]
    if r.surprisal is not None:
        payload["surprisal_bits"] = [rounded(v, 4) for v in r.surprisal]
        payload["surprisal_kind"] = r.surprisal_kind
    if r.pair is not None:
        payload["pair"] = {"kind": r.pair.kind, "prob": rounded(r.pair.prob)}
    if r.logit_lens is not None:
        payload["logit_lens"] = {"tokens": r.logit_lens.tokens, "probs": r.logit_lens.probs.round(5).tolist()}

    def human():
        lines = [f"{m.name}: {len(r.tokens)} tokens, {r.num_layers} layers x {r.num_heads} heads"]
        lines.append(" ".join(t.text for t in r.tokens))
        if r.has_attention:
            lines.append(f"layer {args.layer} head {args.head}: each token's most-attended token")
            a = r.attention(args.layer, args.head)
            lines += [f"  {t.text:>14} -> {r.tokens[int(a[i].argmax())].text} ({a[i].max():.2f})" for i, t in enumerate(r.tokens)]
        for mp in r.masks:
            lines.append(f"[{mp.position}] " + ", ".join(f"{p.token} {p.prob:.3f}" for p in mp.predictions))
        if r.pair:
            lines.append(f"{r.pair.kind}: {r.pair.prob:.3f}")
        return "\n".join(lines)

    emit(args, payload, human)
    return 0


def cmd_fill_mask(args):
    m = load(args.model, args.dtype)  # first: a refused load must not wait for torch's import
    from model.inspect import inspect
    if "mlm" not in m.info.capabilities:
        raise UserError(f"{m.name} is a {m.info.task} model and cannot fill masks; use a masked-LM model (BERT, RoBERTa, ALBERT)")
    text = read_text(args)
    r = inspect(m, text, args.pair, top_k=args.top_k, summaries=False)
    if not r.masks:
        raise UserError(f"no mask token in the text: write {m.info.mask_token or '[MASK]'} where a word should be predicted")
    payload = {"model": m.name, "tokens": r.token_json(), "masks": [mp.to_json() for mp in r.masks], "warnings": r.warnings}
    emit(args, payload, lambda: "\n".join(
        f"[{mp.position}] " + ", ".join(f"{p.token} {p.prob:.3f}" for p in mp.predictions) for mp in r.masks))
    return 0


def cmd_generate(args):
    m = load(args.model, args.dtype)  # first: a refused load must not wait for torch's import
    from model.generate import generate
    if "causal" not in m.info.capabilities:
        raise UserError(f"{m.name} is a {m.info.task} model and cannot generate; use a causal model (GPT-2, ELMo)")
    res = generate(
        m, read_text(args, "prompt"), strategy=args.strategy, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, typical_p=args.typical_p,
        min_p=args.min_p, repetition_penalty=args.repetition_penalty, num_beams=args.num_beams, seed=args.seed,
        length_penalty=args.length_penalty,
        early_stopping={"false": False, "true": True, "never": "never"}[args.early_stopping],
    )
    payload = res.to_json()
    payload["model"] = m.name
    emit(args, payload, lambda: res.prompt + res.text)
    return 0

