"""Generation against transformers' generate(): greedy, seeded sampling and beam search, token for token.

Two ways in: `load_model` (the real TorchBackend), and a minimal Backend written here around a bare
`GPT2LMHeadModel` with a plain namespace as `loaded` (generate() needs only .backend and .tokenizer).
"""
import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import model.generate as gen_mod
from kernels import sampling
from model.backends.base import Backend, ForwardOutput
from app.cli import main
from model.errors import InputError, Unavailable
from model.generate import SamplingConfig, generate, next_token_distribution
from model.load import load_model

PROMPTS = ["the dogs", "hello world, this"]


class HFBackend(Backend):
    """The smallest Backend: a transformers causal LM, full recompute every step."""

    kind = "test"
    has_lm_head = True

    def __init__(self, model):
        self.model = model
        self.vocab_size = model.config.vocab_size
        self.max_positions = model.config.n_positions
        self.num_layers, self.num_heads = model.config.n_layer, model.config.n_head

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, attentions=True, hidden_states=True):
        with torch.no_grad():
            return ForwardOutput(logits=self.model(input_ids, attention_mask=attention_mask).logits.float())


class WithEos:
    """A tokenizer whose EOS is a token the model actually produces, so stopping gets exercised."""

    def __init__(self, tok, eos: int):
        self._tok, self.eos_token_id = tok, eos

    def __call__(self, *a, **kw):
        return self._tok(*a, **kw)

    def __getattr__(self, name):
        return getattr(self._tok, name)


@pytest.fixture(scope="module")
def pair(tiny_models):
    """(LoadedModel through the real loader, the same weights as a transformers model)."""
    m = load_model(tiny_models["gpt2"])
    ref = GPT2LMHeadModel.from_pretrained(str(tiny_models["gpt2"]), attn_implementation="eager").eval()
    return m, ref


@pytest.fixture(scope="module")
def bare(pair):
    """(duck-typed loaded around HFBackend, its transformers model): 2 layers, 4 heads, 64 hidden."""
    tok = pair[0].tokenizer
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=64,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, attn_implementation="eager")
    ref = GPT2LMHeadModel(cfg).eval()
    return SimpleNamespace(backend=HFBackend(ref), tokenizer=tok), ref


def _ids(m, prompt):
    return torch.tensor([m.tokenizer(prompt)["input_ids"]])


def _hf(ref, m, prompt, eos=None, **kw):
    """Generated ids (prompt removed) from transformers' own generate()."""
    ids = _ids(m, prompt)
    eos = m.tokenizer.eos_token_id if eos is None else eos
    with torch.no_grad():
        out = ref.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=eos, eos_token_id=eos, **kw)
    return out[0, ids.shape[1]:].tolist()


def _strip_pad(want, got, eos):
    """transformers pads finished beams with EOS; ours are unpadded."""
    return want[:len(got)] if all(t == eos for t in want[len(got):]) else want


@pytest.mark.parametrize("which", ["pair", "bare"])
@pytest.mark.parametrize("kw", [dict(), dict(repetition_penalty=1.5), dict(repetition_penalty=0.8)])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_transformers(request, which, prompt, kw):
    m, ref = request.getfixturevalue(which)
    r = generate(m, prompt, strategy="greedy", max_new_tokens=12, **kw)
    assert [i for _, i in r.tokens] == _hf(ref, m, prompt, do_sample=False, max_new_tokens=12, **kw)
    assert r.text == m.tokenizer.decode([i for _, i in r.tokens])
    assert len(r.steps) == len(r.tokens) and all(s.pick.id == s.candidates[0].id for s in r.steps)


SAMPLE_SETTINGS = [
    dict(temperature=1.0, top_k=0, top_p=1.0),
    dict(temperature=0.8, top_k=20, top_p=1.0),
    dict(temperature=1.5, top_k=0, top_p=0.9),
    dict(temperature=1.0, top_k=0, top_p=1.0, typical_p=0.8, repetition_penalty=1.3),
    dict(temperature=0.7, top_k=50, top_p=0.95, min_p=0.05),
]


@pytest.mark.parametrize("seed", [0, 1, 42])
@pytest.mark.parametrize("kw", SAMPLE_SETTINGS)
def test_seeded_sampling_equals_transformers(pair, kw, seed):
    m, ref = pair
    r = generate(m, "the dogs", strategy="sample", max_new_tokens=10, seed=seed, **kw)
    torch.manual_seed(seed)
    want = _hf(ref, m, "the dogs", do_sample=True, max_new_tokens=10, **kw)
    assert [i for _, i in r.tokens] == want
    assert r.settings["seed"] == seed and r.settings["strategy"] == "sample"


@pytest.mark.parametrize("seed", [3, 7])
@pytest.mark.parametrize("kw", [dict(top_k=0, temperature=1.2), dict(top_k=10, top_p=0.8, min_p=0.02)])
def test_seeded_sampling_on_a_bare_backend(bare, kw, seed):
    m, ref = bare
    r = generate(m, "hello world", strategy="sample", max_new_tokens=15, seed=seed, **kw)
    torch.manual_seed(seed)
    assert [i for _, i in r.tokens] == _hf(ref, m, "hello world", do_sample=True, max_new_tokens=15, **kw)


@pytest.mark.parametrize("strategy,kw", [("greedy", dict(do_sample=False)),
                                         ("sample", dict(do_sample=True, top_k=0, temperature=0.6))])
def test_stops_at_eos_like_transformers(bare, strategy, kw):
    m, ref = bare
    free = generate(m, "the cat", strategy=strategy, max_new_tokens=10, seed=4)
    eos = free.tokens[3][1]  # the 4th token it produces becomes the EOS
    me = SimpleNamespace(backend=m.backend, tokenizer=WithEos(m.tokenizer, eos))
    r = generate(me, "the cat", strategy=strategy, max_new_tokens=10, seed=4)
    got = [i for _, i in r.tokens]
    assert got[-1] == eos and eos not in got[:-1] and len(got) <= 4
    torch.manual_seed(4)
    want = _hf(ref, m, "the cat", eos=eos, max_new_tokens=10, **kw)
    assert _strip_pad(want, got, eos) == got


def test_unseeded_runs_record_a_seed_that_replays(pair):
    m, _ = pair
    runs = [generate(m, "the dogs", strategy="sample", max_new_tokens=8, seed=None) for _ in range(3)]
    seeds = [r.settings["seed"] for r in runs]
    assert all(isinstance(s, int) and s >= 0 for s in seeds) and len(set(seeds)) == 3
    replay = generate(m, "the dogs", strategy="sample", max_new_tokens=8, seed=seeds[0])
    assert replay.tokens == runs[0].tokens


def test_sampling_leaves_the_global_rng_alone(pair):
    m, _ = pair
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    generate(m, "the dogs", strategy="sample", max_new_tokens=3, seed=9)
    assert torch.equal(torch.rand(1), before)


def test_concurrent_sampling_is_reproducible(pair):
    """App sessions generate in parallel threads; each run must still follow its own seed."""
    m, _ = pair
    seeds = [11, 12, 13, 14]
    alone = {s: generate(m, "the dogs", strategy="sample", max_new_tokens=12, seed=s).tokens for s in seeds}
    together = {}

    def run(s):
        together[s] = generate(m, "the dogs", strategy="sample", max_new_tokens=12, seed=s).tokens

    threads = [threading.Thread(target=run, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


BEAM_SETTINGS = [
    dict(num_beams=2, length_penalty=1.0, early_stopping=False),
    dict(num_beams=3, length_penalty=0.5, early_stopping=True),
    dict(num_beams=4, length_penalty=2.0, early_stopping=False),
    dict(num_beams=5, length_penalty=1.0, early_stopping=True, repetition_penalty=1.4),
    dict(num_beams=3, length_penalty=1.0, early_stopping="never"),
]


def _leaf_path(tree):
    nodes = {n.id: n for n in tree}
    leaf = [n for n in tree if n.status == "finished"]
    assert len(leaf) == 1
    path, n = [], leaf[0]
    while n.parent != -1:
        path.append(n.token_id)
        n = nodes[n.parent]
    return path[::-1]


@pytest.mark.parametrize("kw", BEAM_SETTINGS)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_beam_equals_transformers(pair, prompt, kw):
    m, ref = pair
    r = generate(m, prompt, strategy="beam", max_new_tokens=8, **kw)
    ids = _ids(m, prompt)
    eos = m.tokenizer.eos_token_id
    with torch.no_grad():
        out = ref.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8, pad_token_id=eos,
                           return_dict_in_generate=True, output_scores=True, **kw)
    got = [i for _, i in r.tokens]
    assert got == _strip_pad(out.sequences[0, ids.shape[1]:].tolist(), got, eos)
    assert r.settings["beam_score"] == pytest.approx(out.sequences_scores[0].item(), abs=1e-5)
    assert _leaf_path(r.beam_tree) == got  # the returned sequence is a path from the root
    assert r.beam_tree[0].parent == -1 and any(n.status == "pruned" for n in r.beam_tree)
    assert r.steps == [] and "seed" not in r.settings


def test_beam_with_reachable_eos(bare):
    m, ref = bare
    first = m.backend.next_token_logits(_ids(m, "the cat"))[0].argsort(descending=True)
    eos = int(first[1])  # the runner-up first token ends a hypothesis at once
    me = SimpleNamespace(backend=m.backend, tokenizer=WithEos(m.tokenizer, eos))
    r = generate(me, "the cat", strategy="beam", num_beams=3, max_new_tokens=6, length_penalty=0.0)
    got = [i for _, i in r.tokens]
    assert got == _strip_pad(_hf(ref, m, "the cat", eos=eos, num_beams=3, do_sample=False, max_new_tokens=6,
                                 length_penalty=0.0), got, eos)
    assert any(n.status == "ended" and n.token_id == eos for n in r.beam_tree)
    assert _leaf_path(r.beam_tree) == got


def test_trace_has_full_vocabulary_stages(pair):
    m, ref = pair
    r = generate(m, "the dogs", strategy="sample", max_new_tokens=2, temperature=0.5, top_k=5, trace=True)
    st = r.steps[0].stages
    assert [s.name for s in st] == ["input", "temperature", "top_k"]
    assert all(s.probs.shape == (m.backend.vocab_size,) and s.probs.dtype == np.float32 for s in st)
    assert st[0].kept == m.backend.vocab_size and st[-1].kept == 5 == int((st[-1].probs > 0).sum())
    assert abs(float(st[-1].probs.sum()) - 1) < 1e-5
    # the 'input' stage is the model's own next-token distribution
    with torch.no_grad():
        want = torch.softmax(ref(_ids(m, "the dogs")).logits[0, -1], -1).numpy()
    assert np.allclose(st[0].probs, want, atol=1e-6)
    # candidates are the filtered distribution's best, and the pick is among them
    assert [c.id for c in r.steps[0].candidates[:5]] == list(np.argsort(-st[-1].probs, kind="stable")[:5])
    assert r.steps[0].pick.id in [c.id for c in r.steps[0].candidates[:5]]


def test_next_token_distribution(pair):
    m, ref = pair
    cfg = SamplingConfig(temperature=0.9, top_p=0.5, repetition_penalty=1.2)
    stages, cands = next_token_distribution(m, "the dogs", cfg, top=7)
    assert [s.name for s in stages] == ["input", "repetition_penalty", "temperature", "top_p"]
    ids = _ids(m, "the dogs")
    with torch.no_grad():
        logits = ref(ids).logits[:, -1]
    final, want = sampling.filter_trace(logits, ids, cfg)
    for got, w in zip(stages, want):
        assert np.allclose(got.probs, w.probs[0].numpy(), atol=1e-6) and got.kept == int(w.kept[0])
    assert len(cands) == 7 and [c.prob for c in cands] == sorted([c.prob for c in cands], reverse=True)
    assert stages[-1].probs[cands[0].id] == pytest.approx(cands[0].prob)


def test_trace_budget_truncates_with_a_warning(pair, monkeypatch):
    m, _ = pair
    v = m.backend.vocab_size
    monkeypatch.setattr(gen_mod, "TRACE_BUDGET_BYTES", 3 * 2 * v * 4)  # room for 3 steps of 2 stages
    r = generate(m, "the dogs", strategy="sample", max_new_tokens=6, top_k=0, top_p=0.9, trace=True, seed=2)
    assert [s.stages is not None for s in r.steps] == [True] * 3 + [False] * (len(r.steps) - 3)
    assert any("first 3 steps" in w for w in r.warnings)
    plain = generate(m, "the dogs", strategy="sample", max_new_tokens=6, top_k=0, top_p=0.9, seed=2)
    assert plain.tokens == r.tokens and plain.warnings == []


def test_long_prompt_reduces_max_new_tokens(pair):
    m, _ = pair
    limit = m.backend.max_positions
    prompt = " ".join(["dogs"] * 200)
    assert len(m.tokenizer(prompt)["input_ids"]) >= limit
    with pytest.raises(InputError, match="^the prompt is .* at most"):
        generate(m, prompt, max_new_tokens=5)
    short = " ".join(["dogs"] * 5)
    k = len(m.tokenizer(short)["input_ids"])
    r = generate(m, short, max_new_tokens=limit)
    assert len(r.tokens) <= limit - k and r.settings["max_new_tokens"] == limit - k
    assert any("reduced" in w for w in r.warnings)


@pytest.mark.parametrize("kw,needle", [
    (dict(strategy="sample", temperature=0), "temperature"),
    (dict(strategy="sample", top_p=0), "top_p"),
    (dict(strategy="sample", top_k=10**6), "top_k"),
    (dict(strategy="sample", seed=-3), "seed"),
    (dict(strategy="beam", num_beams=1000), "num_beams"),
    (dict(strategy="beam", num_beams=0), "num_beams"),
    (dict(strategy="beam", early_stopping="maybe"), "early_stopping"),
    (dict(max_new_tokens=100000), "max_new_tokens"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(top_candidates=0), "top_candidates"),
    (dict(strategy="nope"), "strategy"),
])
def test_bad_settings(pair, kw, needle):
    """Every refused setting, the kernels' checks included, is an InputError (the front ends show it)."""
    with pytest.raises(InputError, match=f"^{needle}"):
        generate(pair[0], "the dogs", **kw)


def test_beam_count_bounded_by_vocabulary(pair):
    m, _ = pair
    small = SimpleNamespace(backend=SimpleNamespace(vocab_size=3, max_positions=64), tokenizer=m.tokenizer)
    with pytest.raises(InputError, match="^num_beams must be at most the vocabulary size 3"):
        generate(small, "the dogs", strategy="beam", num_beams=4)


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt(pair, prompt):
    with pytest.raises(InputError, match="prompt is empty"):
        generate(pair[0], prompt)


def test_masked_lm_cannot_generate(tiny_models):
    with pytest.raises(Unavailable, match="cannot generate"):
        generate(load_model(tiny_models["bert-mlm"]), "the dogs")


def test_cli_generate_json(capsys, tiny_models, pair):
    m, ref = pair
    code = main(["generate", str(tiny_models["gpt2"]), "the dogs", "--json", "--strategy", "sample",
                 "--top-p", "0.9", "--seed", "5", "--max-new-tokens", "6"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and len(d["tokens"]) == len(d["steps"]) <= 6
    assert set(d["steps"][0]) == {"candidates", "pick"} and d["steps"][0]["pick"]["id"] == d["tokens"][0]["id"]
    torch.manual_seed(5)
    assert [t["id"] for t in d["tokens"]] == _hf(ref, m, "the dogs", do_sample=True, top_p=0.9, top_k=0, max_new_tokens=6)
    code = main(["generate", str(tiny_models["gpt2"]), "x", "--strategy", "sample", "--temperature", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: temperature")


def test_numpy_integer_settings_are_accepted(pair):
    """The app's widgets may hand over numpy integers; settings must stay JSON-serialisable."""
    m, _ = pair
    r = generate(m, "the dogs", strategy="sample", top_k=np.int64(5), seed=np.int64(3), max_new_tokens=np.int64(2))
    assert r.tokens == generate(m, "the dogs", strategy="sample", top_k=5, seed=3, max_new_tokens=2).tokens
    json.dumps(r.to_json())
    b = generate(m, "the dogs", strategy="beam", num_beams=np.int64(2), max_new_tokens=2)
    json.dumps(b.to_json())
