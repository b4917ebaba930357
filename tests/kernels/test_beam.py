"""kernels.beam against transformers' beam search, with an EOS that is actually reached, and its tree."""
import doctest

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from kernels import beam
from kernels.beam import beam_search

VOCAB = 40


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0,
                     attn_implementation="eager")
    return GPT2LMHeadModel(cfg).eval()


def _step(model):
    def step(ids):  # (beams, seq) -> (beams, vocab) logits
        with torch.no_grad():
            return model(ids).logits[:, -1, :]
    return step


def _path(nodes, leaf: int) -> list[int]:
    """Token ids from the root to node `leaf`."""
    out = []
    while nodes[leaf].parent != -1:
        out.append(nodes[leaf].token_id)
        leaf = nodes[leaf].parent
    return out[::-1]


def _check_tree(r, prompt_len: int):
    nodes = r.nodes
    assert nodes[0].parent == -1 and nodes[0].step == 0
    for i, n in enumerate(nodes[1:], 1):
        assert n.id == i and 0 <= n.parent < i  # parents come first
        assert nodes[n.parent].step == n.step - 1
        assert nodes[n.parent].status == "kept"  # only beams that ran on have children
        assert n.score <= nodes[n.parent].score + 1e-6  # log-probabilities only go down
    finished = [n.id for n in nodes if n.status == "finished"]
    assert sorted(finished) == sorted(r.leaves)
    for seq, leaf in zip(r.sequences, r.leaves):  # every returned sequence is a path from the root
        assert _path(nodes, leaf) == seq[prompt_len:].tolist()
        assert nodes[leaf].step == len(seq) - prompt_len


@pytest.mark.parametrize("eos_rank", [0, 1, 3])
@pytest.mark.parametrize("num_beams,length_penalty,early_stopping", [
    (2, 1.0, False), (3, 0.5, True), (4, 2.0, False), (4, 1.0, "never"), (5, -0.5, True), (3, 0.0, "never")])
def test_equals_transformers_with_reachable_eos(model, eos_rank, num_beams, length_penalty, early_stopping):
    prompt = torch.tensor([[3, 14, 15]])
    with torch.no_grad():
        first = model(prompt).logits[0, -1].argsort(descending=True)
    eos = int(first[eos_rank])  # an EOS the search meets on its first step
    r = beam_search(_step(model), prompt, num_beams, 7, eos, length_penalty, early_stopping, num_return_sequences=num_beams)
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, eos_token_id=eos,
                             pad_token_id=eos, num_return_sequences=num_beams, return_dict_in_generate=True,
                             output_scores=True, num_beams=num_beams, length_penalty=length_penalty,
                             early_stopping=early_stopping, max_new_tokens=7)
    assert len(r.sequences) == num_beams
    for i in range(num_beams):
        want = out.sequences[i].tolist()
        got = r.sequences[i].tolist()
        assert got == want[:len(got)] and all(t == eos for t in want[len(got):]), (i, got, want)
        assert r.scores[i] == pytest.approx(out.sequences_scores[i].item(), abs=1e-5)
    _check_tree(r, prompt.shape[1])


@pytest.mark.parametrize("num_beams,num_return", [(3, 1), (4, 2)])
def test_without_eos_runs_to_the_length_limit(model, num_beams, num_return):
    prompt = torch.tensor([[1, 2]])
    r = beam_search(_step(model), prompt, num_beams, 4, None, num_return_sequences=num_return)
    assert len(r.sequences) == num_return and all(len(s) == 2 + 4 for s in r.sequences)
    assert r.scores == sorted(r.scores, reverse=True)
    _check_tree(r, 2)
    by_step = {}
    for n in r.nodes[1:]:
        by_step.setdefault(n.step, []).append(n)
    assert sorted(by_step) == [1, 2, 3, 4]
    assert all(len(v) == 2 * num_beams for v in by_step.values())  # 2 x num_beams candidates per step
    assert all(sum(n.status == "kept" for n in by_step[s]) == num_beams for s in (1, 2, 3))
    assert all(n.status in ("finished", "ended") for n in by_step[4])  # the last step ends every candidate


def test_logits_and_log_probs_give_the_same_search(model):
    prompt = torch.tensor([[5, 6, 7]])
    step = _step(model)
    a = beam_search(step, prompt, 3, 5, 9, num_return_sequences=3)
    b = beam_search(lambda ids: torch.log_softmax(step(ids), -1), prompt, 3, 5, 9, num_return_sequences=3)
    assert [s.tolist() for s in a.sequences] == [s.tolist() for s in b.sequences]
    assert a.scores == pytest.approx(b.scores, abs=1e-6)


def test_process_hook_sees_running_ids_and_log_probs(model):
    seen = []

    def process(ids, logp):
        seen.append((ids.shape, float(logp.exp().sum(-1).mean())))
        banned = logp.clone()
        banned[:, 11] = -float("inf")  # a hook can forbid a token
        return banned

    r = beam_search(_step(model), torch.tensor([[1]]), 2, 3, None, process=process)
    assert [s for s, _ in seen] == [torch.Size([2, 1]), torch.Size([2, 2]), torch.Size([2, 3])]
    assert all(abs(total - 1) < 1e-5 for _, total in seen)  # log-probabilities, not logits
    assert 11 not in r.sequences[0].tolist() and all(n.token_id != 11 for n in r.nodes)


def test_reorder_hook_names_the_parent_row_of_every_new_beam(model):
    """What a KV cache needs: after each step, new running beam i == previous running beam parents[i] + 1 token."""
    calls, parents = [], []
    inner = _step(model)

    def step(ids):
        calls.append(ids.clone())
        return inner(ids)

    beam_search(step, torch.tensor([[1, 5]]), 3, 6, None, reorder=lambda idx: parents.append(idx.clone()))
    assert len(calls) >= 2 and len(parents) >= len(calls) - 1
    for prev, idx, cur in zip(calls, parents, calls[1:]):
        assert idx.dtype == torch.long and idx.shape == (3,)
        assert torch.equal(cur[:, :-1], prev[idx])


@pytest.mark.parametrize("kw,needle", [
    (dict(num_beams=0), "num_beams"), (dict(num_beams=65), "num_beams"), (dict(num_beams=41), "num_beams"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(length_penalty=float("inf")), "length_penalty"), (dict(num_return_sequences=3), "num_return_sequences"),
])
def test_out_of_range_settings_are_named(model, kw, needle):
    args = dict(num_beams=2, max_new_tokens=3, eos_token_id=None) | kw
    with pytest.raises(ValueError, match=f"^{needle}"):
        beam_search(_step(model), torch.tensor([[1]]), **args)


def test_docstring_examples():
    assert doctest.testmod(beam, raise_on_error=True).attempted >= 3
