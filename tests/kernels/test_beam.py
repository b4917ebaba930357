"""kernels.beam against transformers' beam search, with an EOS that is actually reached."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from kernels.beam import beam_search


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()


def _step(model):
    def step(ids):
        with torch.no_grad():
            return torch.log_softmax(model(ids).logits[:, -1, :].float(), -1)
    return step


@pytest.mark.parametrize("eos_rank", [0, 1, 3])
@pytest.mark.parametrize("num_beams,length_penalty,early_stopping", [
    (2, 1.0, False), (3, 0.5, True), (4, 2.0, False), (4, 1.0, "never"), (5, -0.5, True)])
def test_equals_transformers_with_reachable_eos(model, eos_rank, num_beams, length_penalty, early_stopping):
    prompt = torch.tensor([[3, 14, 15]])
    with torch.no_grad():
        first = model(prompt).logits[0, -1].argsort(descending=True)
    eos = int(first[eos_rank])  # an EOS the search meets on its first step
    kw = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping, max_new_tokens=7)
    r = beam_search(_step(model), prompt, num_beams, 7, eos, length_penalty, early_stopping, num_return_sequences=num_beams)
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, eos_token_id=eos,
                             pad_token_id=eos, num_return_sequences=num_beams, return_dict_in_generate=True,
                             output_scores=True, **kw)
    for i in range(num_beams):
        want = out.sequences[i].tolist()
        got = r.sequences[i].tolist()
        assert got == want[:len(got)] and all(t == eos for t in want[len(got):]), (i, got, want)
        assert r.scores[i] == pytest.approx(out.sequences_scores[i].item(), abs=1e-4)


def test_tree_records_every_candidate(model):
    prompt = torch.tensor([[1, 2]])
    r = beam_search(_step(model), prompt, 3, 4, None)
    assert r.nodes[0].parent == -1
    by_step = {}
    for n in r.nodes[1:]:
        by_step.setdefault(n.step, []).append(n)
        assert r.nodes[n.parent].step == n.step - 1  # parents are one step earlier
        assert r.nodes[n.parent].status == "kept"
    assert all(len(v) == 6 for v in by_step.values())  # 2 x num_beams candidates per step
    assert sum(n.status == "finished" for n in r.nodes) == 1


@pytest.mark.parametrize("beams", [0, 65])
def test_beam_count_is_bounded(model, beams):
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(_step(model), torch.tensor([[1]]), beams, 3, None)
