"""The commands beyond attention: `lmscope agreement` (subject-verb probes), `attribute` (saliency),
`neurons` (NMF of feed-forward activations), `project` (PCA / UMAP of hidden states), `search` (corpus search).
"""
from __future__ import annotations

from app.cli.io import emit, load, read_text, rounded


def cmd_agreement(args):
    from model.probes import agreement

    m = load(args.model)
    r = agreement(m, n=args.n, seed=args.seed, n_examples=args.examples)
    payload = r.to_json()

    def human():
        lines = [f"{m.name} ({r.objective}): subject-verb agreement on {int(r.counts[0])} toy-world probes (seed {r.seed})"]
        lines += [f"  {g:<22} {'-' if c == 0 else f'{a:6.1%}'}  ({c} probes)" for g, a, c in zip(r.groups, r.accuracy, r.counts)]
        if r.skipped:
            lines.append(f"  skipped {r.skipped} probes whose verb forms are not one token each")
        lines += [f"  [{e.kind}] {e.sentence}  ->  prefers '{e.preferred}' ({e.correct} {e.correct_score:.2f} vs "
                  f"{e.wrong} {e.wrong_score:.2f}){'' if e.ok else '  WRONG'}" for e in r.examples]
        return "\n".join(lines)

    emit(args, payload, human)
    return 0


def cmd_attribute(args):
    from model.attribute import attribute

    m = load(args.model)
    a = attribute(m, read_text(args), target_position=args.target_position, target_token=args.target_token,
                  method=args.method, steps=args.steps)
    payload = a.to_json()
    payload["model"] = m.name

    def human():
        t = a.target
        head = (f"{a.method}: log p({t['token']!r} at {t['position']}) = {a.target_score:.4f} "
                f"(baseline {a.baseline_score:.4f})")
        return "\n".join([head] + [f"  {i:>3} {tok.text:>14} {s:+.4f}" for i, (tok, s) in enumerate(zip(a.tokens, a.scores))])

    emit(args, payload, human)
    return 0


def cmd_neurons(args):
    from model.neurons import neurons

    m = load(args.model)
    r = neurons(m, read_text(args), layers=None if args.layer is None else [args.layer], k=args.k)
    payload = r.to_json()
    payload["model"] = m.name

    def human():
        lines = [f"{m.name}: NMF of layers {list(r.layers)} into {r.k} components (error {r.error:.3f})"]
        for c in range(r.k):
            lines.append(f"component {c}: " + " ".join(f"{t.text}:{v:.2f}" for t, v in zip(r.tokens, r.factors[:, c])
                                                       if v >= 0.5 * r.factors[:, c].max() > 0))
        return "\n".join(lines)

    emit(args, payload, human)
    return 0


def cmd_project(args):
    from model import textsets
    from model.projector import project, token_states

    m = load(args.model)
    layer = m.backend.num_layers if args.layer is None else args.layer
    ts = token_states(m, textsets.load(args.data), [layer], max_tokens=args.max_tokens)
    xy = project(ts.layer(layer), args.method)
    payload = {"model": m.name, "data": args.data, "layer": layer, "method": args.method,
               "points": [{"x": rounded(x), "y": rounded(y), "token": t, "label": lab, "text": int(i), "position": int(p),
                           "context": c} for (x, y), t, lab, i, p, c in
                          zip(xy, ts.tokens, ts.labels, ts.text_index, ts.position, ts.contexts)],
               "warnings": ts.warnings}
    emit(args, payload, lambda: "\n".join(f"{x:9.3f} {y:9.3f}  {t:<14} {lab:<12} {c}" for (x, y), t, lab, c in
                                            zip(xy, ts.tokens, ts.labels, ts.contexts)))
    return 0


def cmd_search(args):
    from model import textsets
    from model.corpus_search import build_index, query_vector, search

    m = load(args.model)
    layer = m.backend.num_layers if args.layer is None else args.layer
    index = build_index(m, textsets.load(args.data), max_tokens=args.max_tokens)
    hits = search(index, query_vector(m, read_text(args), args.token, layer), layer, k=args.k, metric=args.metric)
    payload = {"model": m.name, "data": args.data, "layer": layer, "metric": args.metric, "index": str(index.path),
               "hits": [h.to_json() for h in hits], "warnings": []}
    emit(args, payload, lambda: "\n".join(f"{h.rank:>3} {h.score:8.4f} {h.token:<14} {h.context}" for h in hits))
    return 0

