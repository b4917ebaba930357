"""Generation over any backend: greedy, seeded sampling and beam search, with a trace of every step.

    >>> m = load_model("demo/gpt2")                                        # doctest: +SKIP
    >>> r = generate(m, "the dogs", strategy="sample", top_p=0.9, seed=3)   # doctest: +SKIP
    >>> r.text, r.steps[0].pick.token                                       # doctest: +SKIP

Sampling draws from the global torch RNG exactly like transformers' `generate()`, inside
`torch.random.fork_rng()` so the caller's RNG state is untouched: with the same seed and settings the
tokens equal `torch.manual_seed(seed); model.generate(do_sample=True, ...)` (tests check it).
"""
from __future__ import annotations

import numpy as np
import torch

from kernels import sampling
from kernels.beam import beam_search
from kernels.sampling import SamplingConfig
from model.load import LoadedModel
from model.results import BeamNode, FilterStage, GenerationResult, GenerationStep, Prediction

__all__ = ["SamplingConfig", "generate", "next_token_distribution"]

MAX_NEW_TOKENS = 1024


def _prompt_ids(loaded: LoadedModel, prompt: str) -> torch.Tensor:
    from model.inspect import clean_text

    prompt = clean_text(prompt)
    if not prompt.strip():
        raise ValueError("the prompt is empty")
    ids = loaded.tokenizer(prompt, add_special_tokens=loaded.info.model_type != "gpt2", verbose=False)["input_ids"]
    if loaded.info.model_type != "gpt2" and loaded.tokenizer.sep_token_id is not None and ids and ids[-1] == loaded.tokenizer.sep_token_id:
        ids = ids[:-1]  # an encoder-style tokenizer's closing [SEP] would end the text before we continue it
    if not ids:
        raise ValueError("the prompt has no tokens")
    return torch.tensor([ids], dtype=torch.long)


def _config(loaded: LoadedModel, strategy: str, **kw) -> SamplingConfig:
    if strategy not in ("greedy", "sample", "beam"):
        raise ValueError(f"strategy must be greedy, sample or beam, got {strategy!r}")
    cfg = SamplingConfig(do_sample=strategy == "sample", **kw)
    cfg.validate(loaded.backend.vocab_size)
    return cfg


def _candidates(tok, probs: torch.Tensor, n: int) -> list[Prediction]:
    top = probs.topk(min(n, probs.shape[-1]))
    names = tok.convert_ids_to_tokens(top.indices.tolist())
    return [Prediction(t, int(i), float(p)) for t, i, p in zip(names, top.indices.tolist(), top.values.tolist())]


def _stages(stages: list[sampling.Stage]) -> list[FilterStage]:
    return [FilterStage(s.name, s.params, s.probs()[0].numpy().astype(np.float32), int(s.kept()[0])) for s in stages]


def next_token_distribution(loaded: LoadedModel, prompt: str, cfg: SamplingConfig, top: int = 20):
    """The next-token distribution after `prompt` and how each active filter reshapes it.
    Returns (stages: list[FilterStage] with full-vocabulary probabilities, candidates after filtering)."""
    _require_causal(loaded)
    cfg.validate(loaded.backend.vocab_size)
    ids = _prompt_ids(loaded, prompt)
    logits = loaded.backend.next_token_logits(ids)  # (1, vocab)
    final, stages = sampling.filter_trace(logits, ids, cfg)
    return _stages(stages), _candidates(loaded.tokenizer, torch.softmax(final, -1)[0], top)


def _require_causal(loaded: LoadedModel) -> None:
    if "causal" not in loaded.info.capabilities:
        raise ValueError(f"{loaded.name} is a {loaded.info.task} model and cannot generate; choose a causal model (GPT-2, ELMo)")


def generate(
    loaded: LoadedModel,
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
    early_stopping: bool = False,
    seed: int | None = 0,
    trace: bool = False,
    top_candidates: int = 10,
) -> GenerationResult:
    """Continue `prompt`. strategy: greedy | sample | beam. trace=True adds each step's full-vocabulary
    distribution after every filter stage (V floats per stage per step)."""
    _require_causal(loaded)
    cfg = _config(loaded, strategy, temperature=temperature, top_k=top_k, top_p=top_p, typical_p=typical_p,
                  min_p=min_p, repetition_penalty=repetition_penalty)
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {max_new_tokens}")
    ids = _prompt_ids(loaded, prompt)
    limit = loaded.backend.max_positions
    warnings = []
    if limit is not None and ids.shape[1] + max_new_tokens > limit:
        if ids.shape[1] >= limit:
            raise ValueError(f"the prompt is {ids.shape[1]} tokens; the model reads at most {limit}")
        max_new_tokens = limit - ids.shape[1]
        warnings.append(f"max_new_tokens reduced to {max_new_tokens}: the model reads at most {limit} tokens")
    settings = dict(strategy=strategy, max_new_tokens=max_new_tokens, seed=seed, num_beams=num_beams,
                    length_penalty=length_penalty, early_stopping=early_stopping, **cfg.to_dict())
    tok, backend = loaded.tokenizer, loaded.backend
    eos = tok.eos_token_id
    if strategy == "beam":
        return _beam(loaded, prompt, ids, cfg, num_beams, max_new_tokens, length_penalty, early_stopping, settings, warnings)

    steps: list[GenerationStep] = []
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        for _ in range(max_new_tokens):
            logits = backend.next_token_logits(ids)  # (1, vocab)
            if trace:
                final, stages = sampling.filter_trace(logits, ids, cfg)
            else:
                final, stages = sampling.apply(logits, ids, cfg), None
            nxt = sampling.pick(final, cfg)  # (1,)
            probs = torch.softmax(final, -1)[0]
            t = int(nxt[0])
            steps.append(GenerationStep(
                candidates=_candidates(tok, probs, top_candidates),
                pick=Prediction(tok.convert_ids_to_tokens(t), t, float(probs[t])),
                stages=_stages(stages) if stages else None,
            ))
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            if eos is not None and t == eos:
                break
    new = [s.pick.id for s in steps]
    return GenerationResult(prompt=prompt, text=tok.decode(new), tokens=[(s.pick.token, s.pick.id) for s in steps],
                            steps=steps, settings=settings, warnings=warnings)


def _beam(loaded, prompt, ids, cfg, num_beams, max_new_tokens, length_penalty, early_stopping, settings, warnings):
    tok, backend = loaded.tokenizer, loaded.backend
    if not 1 <= num_beams <= 64:
        raise ValueError(f"num_beams must be between 1 and 64, got {num_beams}")

    def step(running: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(backend.next_token_logits(running).float(), -1)

    def process(running, logp):
        return sampling.apply(logp, running, cfg)  # do_sample=False: only the repetition penalty

    r = beam_search(step, ids, num_beams, max_new_tokens, tok.eos_token_id, length_penalty, early_stopping,
                    process=process if cfg.repetition_penalty != 1.0 else None)
    best = r.sequences[0][ids.shape[1]:].tolist()
    names = tok.convert_ids_to_tokens([n.token_id for n in r.nodes[1:]]) if len(r.nodes) > 1 else []
    tree = [BeamNode(0, -1, 0, prompt, -1, 0.0, r.nodes[0].status)]
    tree += [BeamNode(n.id, n.parent, n.step, name, n.token_id, n.score, n.status) for n, name in zip(r.nodes[1:], names)]
    settings = dict(settings, beam_score=r.scores[0])
    return GenerationResult(prompt=prompt, text=tok.decode(best), tokens=list(zip(tok.convert_ids_to_tokens(best), best)),
                            beam_tree=tree, settings=settings, warnings=warnings)
