"""Generation over any backend: greedy, seeded sampling and beam search, with a trace of every step.

    >>> m = load_model("demo/gpt2")                                        # doctest: +SKIP
    >>> r = generate(m, "the dogs", strategy="sample", top_p=0.9, seed=3)   # doctest: +SKIP
    >>> r.text, r.steps[0].pick.token, r.settings["seed"]                   # doctest: +SKIP

`loaded` is anything with `.backend` (a `Backend`) and `.tokenizer` (a transformers tokenizer); a
`model.load.LoadedModel` also brings `.info`, used to refuse models that cannot generate.

Sampling draws with `torch.multinomial` like transformers' `generate()`, but from a private
`torch.Generator` seeded with `seed`: the global RNG is never touched (concurrent app sessions cannot
disturb each other) and the tokens still equal `torch.manual_seed(seed); model.generate(do_sample=True, ...)`
(a CPU generator seeded with s yields the same stream as the global one; tests check it). seed=None draws
a fresh seed and records it in `settings["seed"]`, so every run can be replayed.

Prompt + max_new_tokens beyond the model's positions: max_new_tokens is reduced to fit, with a warning
(InputError only if the prompt alone fills them).

Backends that offer a `Decoder` (`backend.decoder(ids)`, the torch backend's causal LMs) are run
incrementally with a key/value cache, one new position per step; the others recompute the whole prefix
with `backend.next_token_logits` at every step. Both give the same logits (to ~1e-5) and tokens.
"""
from __future__ import annotations

import numbers
import secrets
from typing import Any, Callable

import numpy as np
import torch

from kernels import sampling
from kernels.beam import beam_search, check_settings
from kernels.sampling import SamplingConfig
from model.errors import InputError, Unavailable
from model.results import BeamNode, FilterStage, GenerationResult, GenerationStep, Prediction

__all__ = ["SamplingConfig", "generate", "next_token_distribution"]

MAX_NEW_TOKENS = 1024  # GPT-2's whole context; backends without a KV cache recompute the prefix each step
MAX_TOP_CANDIDATES = 1000  # candidates per step are shown in a table, never the whole vocabulary
# trace=True keeps V float32 per stage per step (GPT-2: 200 KB x up to 7 stages); past this budget the
# remaining steps are generated without a trace and a warning says so.
TRACE_BUDGET_BYTES = 256 * 2**20
SEED_BITS = 31  # drawn seeds stay short enough to read and retype


def prompt_ids(loaded: Any, prompt: str) -> torch.Tensor:
    """(1, seq) int64 ids of the prompt, without a closing [SEP] that would end the text."""
    from model.inspect import clean_text

    prompt = clean_text(prompt)
    if not prompt.strip():
        raise InputError("the prompt is empty")
    tok = loaded.tokenizer
    info = getattr(loaded, "info", None)
    specials = info is None or info.model_type != "gpt2"  # GPT-2 tokenizers may add <|endoftext|>: not before a continuation
    ids = tok(prompt, add_special_tokens=specials, verbose=False)["input_ids"]
    sep = getattr(tok, "sep_token_id", None)
    if specials and sep is not None and ids and ids[-1] == sep:
        ids = ids[:-1]  # an encoder-style tokenizer's closing [SEP] would end the text before we continue it
    if not ids:
        raise InputError("the prompt has no tokens")
    return torch.tensor([ids], dtype=torch.long)


def _require_causal(loaded: Any) -> None:
    info = getattr(loaded, "info", None)
    if info is not None and "causal" not in info.capabilities:
        raise Unavailable(f"{info.name} is a {info.task} model and cannot generate; choose a causal model (GPT-2, ELMo)")


def _candidates(tok, probs: torch.Tensor, n: int) -> list[Prediction]:
    """probs: (vocab,) -> the n most probable tokens, best first."""
    top = probs.topk(min(n, probs.shape[-1]))
    ids = top.indices.tolist()
    names = tok.convert_ids_to_tokens(ids)
    return [Prediction(t, i, float(p)) for t, i, p in zip(names, ids, top.values.tolist())]


def _stages(stages: list[sampling.Stage]) -> list[FilterStage]:
    """Kernel stages of one (1, vocab) row -> result objects with (V,) float32 probabilities."""
    return [FilterStage(s.name, dict(s.params), s.probs[0].numpy().astype(np.float32), int(s.kept[0])) for s in stages]


def next_token_distribution(loaded: Any, prompt: str, cfg: SamplingConfig, top: int = 20) -> tuple[list[FilterStage], list[Prediction]]:
    """The next-token distribution after `prompt` and how each active filter reshapes it.

    Returns (stages, candidates): stages[0] is the model's own distribution ("input"), then one stage per
    active filter in transformers' order, each with full-vocabulary probabilities; candidates are the `top`
    most probable tokens after all filters."""
    _require_causal(loaded)
    _check_settings(cfg.validate, loaded.backend.vocab_size)
    _check_top(top)
    ids = prompt_ids(loaded, prompt)
    limit = loaded.backend.max_positions
    if limit is not None and ids.shape[1] > limit:  # past the position table: an IndexError deep in torch
        raise InputError(f"the prompt is {ids.shape[1]} tokens; the model reads at most {limit}: shorten it")
    logits = loaded.backend.next_token_logits(ids)  # (1, vocab)
    final, stages = sampling.filter_trace(logits, ids, cfg)
    return _stages(stages), _candidates(loaded.tokenizer, torch.softmax(final, -1)[0], top)


def _check_settings(check: Callable[..., None], *args, **kw) -> None:
    """Run a kernel's check of settings the user chose; its ValueError, which names the setting out of
    range, becomes an InputError."""
    try:
        check(*args, **kw)
    except ValueError as e:
        raise InputError(str(e)) from None


def _check_top(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= MAX_TOP_CANDIDATES:
        raise InputError(f"top_candidates must be between 1 and {MAX_TOP_CANDIDATES}, got {n!r}")


def generate(
    loaded: Any,
    prompt: str,
    *,
    strategy: str = "greedy",
    max_new_tokens: int = 20,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    typical_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    seed: int | None = 0,
    trace: bool = False,
    top_candidates: int = 10,
) -> GenerationResult:
    """Continue `prompt`. strategy: greedy | sample | beam.

    greedy and sample record, per step, the `top_candidates` best tokens after filtering and the pick;
    trace=True adds each step's full-vocabulary distribution after every filter stage. beam fills
    `beam_tree` (every expanded hypothesis) instead; only repetition_penalty applies to it, as in
    transformers. Generation stops at the tokenizer's EOS."""
    _require_causal(loaded)
    if strategy not in ("greedy", "sample", "beam"):
        raise InputError(f"strategy must be greedy, sample or beam, got {strategy!r}")
    backend, tok = loaded.backend, loaded.tokenizer
    if seed is None:
        seed = secrets.randbits(SEED_BITS)
    cfg = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, typical_p=typical_p, min_p=min_p,
                         repetition_penalty=repetition_penalty, do_sample=strategy == "sample", seed=seed)
    _check_settings(cfg.validate, backend.vocab_size)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise InputError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {max_new_tokens!r}")
    seed, max_new_tokens = int(seed), int(max_new_tokens)  # numpy integers from the app -> plain ints for JSON
    _check_top(top_candidates)
    if strategy == "beam":
        _check_settings(check_settings, num_beams, max_new_tokens, length_penalty, early_stopping,
                        vocab_size=backend.vocab_size)
    ids = prompt_ids(loaded, prompt)  # (1, prompt)
    warnings: list[str] = []
    limit = backend.max_positions
    if limit is not None and ids.shape[1] + max_new_tokens > limit:
        if ids.shape[1] >= limit:
            raise InputError(f"the prompt is {ids.shape[1]} tokens; the model reads at most {limit}, leaving no room to generate")
        max_new_tokens = limit - ids.shape[1]
        warnings.append(f"max_new_tokens reduced to {max_new_tokens}: the model reads at most {limit} tokens")
    settings = dict(cfg.to_dict(), seed=seed, top_k=int(top_k), strategy=strategy, max_new_tokens=max_new_tokens)
    if strategy == "beam":
        num_beams = int(num_beams)
        settings.update(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping)
        del settings["seed"]  # beam search is deterministic
        return _beam(loaded, prompt, ids, cfg, num_beams, max_new_tokens, length_penalty, early_stopping, settings, warnings)

    n_stages = 1 + len(sampling.pipeline(cfg))
    traced_steps = max(1, TRACE_BUDGET_BYTES // (n_stages * backend.vocab_size * 4)) if trace else 0
    if trace and traced_steps < max_new_tokens:
        warnings.append(f"full-vocabulary traces kept for the first {traced_steps} steps only "
                        f"({n_stages} stages x {backend.vocab_size} tokens per step)")
    gen = torch.Generator().manual_seed(seed)  # private: same stream as torch.manual_seed(seed), global RNG untouched
    eos = tok.eos_token_id
    steps: list[GenerationStep] = []
    dec = backend.decoder(ids)  # KV cache, or None: recompute the prefix each step
    for i in range(max_new_tokens):
        logits = dec.logits() if dec is not None else backend.next_token_logits(ids)  # (1, vocab)
        if i < traced_steps:
            final, stages = sampling.filter_trace(logits, ids, cfg)  # (1, vocab), stages
        else:
            final, stages = sampling.apply(logits, ids, cfg), None
        nxt = sampling.pick(final, cfg, gen)  # (1,)
        probs = torch.softmax(final, -1)[0]  # (vocab,) after every filter
        t = int(nxt[0])
        steps.append(GenerationStep(
            candidates=_candidates(tok, probs, top_candidates),
            pick=Prediction(tok.convert_ids_to_tokens(t), t, float(probs[t])),
            stages=_stages(stages) if stages else None,
        ))
        ids = torch.cat([ids, nxt[:, None]], dim=1)  # (1, seq + 1)
        if dec is not None:
            dec.append(nxt)  # lazy: runs on the next logits() only
        if eos is not None and t == eos:
            break
    new = [s.pick.id for s in steps]
    return GenerationResult(prompt=prompt, text=tok.decode(new), tokens=[(s.pick.token, s.pick.id) for s in steps],
                            steps=steps, settings=settings, warnings=warnings)


def _beam(loaded, prompt, ids, cfg, num_beams, max_new_tokens, length_penalty, early_stopping, settings, warnings):
    tok, backend = loaded.tokenizer, loaded.backend

    dec = backend.decoder(ids)  # over the (1, prompt) prefix; None: recompute every step
    first = [True]

    def step(running: torch.Tensor) -> torch.Tensor:
        if dec is None:
            return backend.next_token_logits(running)  # (beams, vocab)
        if first[0]:  # every beam is the prompt
            dec.reorder(torch.zeros(running.shape[0], dtype=torch.long))
            first[0] = False
        else:  # the kernel has reordered the cache to the new beams' parents (reorder= below)
            dec.append(running[:, -1])
        return dec.logits()  # (beams, vocab)

    def process(running: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
        return sampling.apply(logp, running, cfg)  # do_sample=False: only the repetition penalty, on log-probs

    r = beam_search(step, ids, num_beams, max_new_tokens, tok.eos_token_id, length_penalty, early_stopping,
                    process=process if cfg.repetition_penalty != 1.0 else None,
                    reorder=dec.reorder if dec is not None else None)
    best = r.sequences[0][ids.shape[1]:].tolist()
    names = tok.convert_ids_to_tokens([n.token_id for n in r.nodes[1:]]) if len(r.nodes) > 1 else []
    tree = [BeamNode(0, -1, 0, prompt, -1, 0.0, r.nodes[0].status)]
    tree += [BeamNode(n.id, n.parent, n.step, name, n.token_id, n.score, n.status) for n, name in zip(r.nodes[1:], names)]
    settings = dict(settings, beam_score=r.scores[0])
    return GenerationResult(prompt=prompt, text=tok.decode(best), tokens=list(zip(tok.convert_ids_to_tokens(best), best)),
                            beam_tree=tree, settings=settings, warnings=warnings)
