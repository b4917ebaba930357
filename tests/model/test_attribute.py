"""Attribution: lmscope's scores equal Captum's own, computed on the transformers model's own forward (eager
attention, its own LM head), for BERT masked positions and GPT-2 next tokens; integrated gradients are complete."""
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradientXActivation

from model.attribute import attribute
from model.inspect import InputError, Unavailable
from model.load import load_model

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "models"
CASES = [("bert-mlm", "the dogs near the cat [MASK] quickly.", None),
         ("gpt2", "the dogs near the cat", None),
         ("gpt2", "the dogs near the cat run quickly", 3)]


def _reference(path: Path, a) -> tuple[np.ndarray, np.ndarray]:
    """Captum on the transformers model itself: (IG scores, grad x input scores) for a's target."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    cls = AutoModelForMaskedLM if a.target["kind"] == "masked" else AutoModelForCausalLM
    model = cls.from_pretrained(path, attn_implementation="eager").eval()
    ids = torch.tensor([[t.id for t in a.tokens]])
    p, target = a.target["position"], a.target["id"]

    def from_embeds(e):
        return torch.log_softmax(model(inputs_embeds=e).logits[:, p], -1)[:, target]

    def from_ids(i):
        return torch.log_softmax(model(input_ids=i).logits[:, p], -1)[:, target]

    emb = model.get_input_embeddings()(ids).detach()
    special = torch.tensor([t.special for t in a.tokens])[None, :, None]
    base = torch.where(special, emb, torch.zeros_like(emb))
    ig = IntegratedGradients(from_embeds).attribute(emb, baselines=base, n_steps=a.steps or 50)
    gxi = LayerGradientXActivation(from_ids, model.get_input_embeddings()).attribute(ids)
    return ig[0].sum(-1).detach().numpy(), gxi[0].sum(-1).detach().numpy()


def _models(tiny_models):
    out = {"bert-mlm": tiny_models["bert-mlm"], "gpt2": tiny_models["gpt2"]}
    return out


@pytest.mark.parametrize("arch,text,position", CASES)
def test_scores_equal_captums_on_tiny_models(tiny_models, arch, text, position):
    path = tiny_models[arch]
    m = load_model(path)
    ig = attribute(m, text, target_position=position, method="integrated_gradients", steps=32)
    gx = attribute(m, text, target_position=position, method="grad_x_input")
    ref_ig, ref_gx = _reference(path, ig)
    assert gx.target == ig.target
    np.testing.assert_allclose(ig.scores, ref_ig, atol=1e-5, rtol=0)
    np.testing.assert_allclose(gx.scores, ref_gx, atol=1e-5, rtol=0)
    diff = ig.target_score - ig.baseline_score
    assert abs(ig.scores.sum() - diff) <= 0.01 * abs(diff)
    assert abs(ig.convergence_delta) <= 0.01 * abs(diff)


@pytest.mark.parametrize("name,text", [("bert", "the dogs near the cat [MASK] ."), ("gpt2", "the dogs near the cat")])
def test_scores_equal_captums_on_demo_models(name, text):
    path = DEMO / name
    if not (path / "config.json").is_file():
        pytest.skip("demo models not built")
    m = load_model(path)
    ig = attribute(m, text, method="integrated_gradients", steps=50)
    gx = attribute(m, text, method="grad_x_input")
    ref_ig, ref_gx = _reference(path, ig)
    np.testing.assert_allclose(ig.scores, ref_ig, atol=1e-5, rtol=0)
    np.testing.assert_allclose(gx.scores, ref_gx, atol=1e-5, rtol=0)
    diff = ig.target_score - ig.baseline_score
    assert abs(ig.scores.sum() - diff) <= 0.01 * abs(diff)


def test_causal_tokens_after_the_target_get_nothing(tiny_models):
    a = attribute(load_model(tiny_models["gpt2"]), "the dogs near the cat run", target_position=2,
                  method="grad_x_input")
    assert a.target["kind"] == "next"
    assert np.all(a.scores[3:] == 0) and np.any(a.scores[:3] != 0)


def test_target_token_by_piece_and_bad_inputs(tiny_models):
    m = load_model(tiny_models["bert-mlm"])
    a = attribute(m, "the [MASK] sleeps .", target_token="cat", method="grad_x_input")
    assert a.target["token"] == "cat" and a.target["position"] == 2
    with pytest.raises(InputError, match="no mask"):
        attribute(m, "the cat sleeps .")
    with pytest.raises(InputError, match="out of range"):
        attribute(m, "the [MASK] sleeps .", target_position=99)
    with pytest.raises(InputError, match="not one token"):
        attribute(m, "the [MASK] sleeps .", target_token="xqzjwv")
    with pytest.raises(InputError, match="steps"):
        attribute(m, "the [MASK] sleeps .", steps=0)
    with pytest.raises(Unavailable):
        attribute(load_model(tiny_models["bert-encoder"]), "the [MASK] sleeps .")


def test_cli_json_keys_and_errors(tiny_models, capsys):
    import json

    from app.cli import main

    path = str(tiny_models["gpt2"])
    assert main(["attribute", path, "the dogs near the cat", "--json", "--method", "integrated_gradients",
                 "--steps", "16"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"tokens", "scores", "method", "target", "target_score", "baseline_score", "convergence_delta"} <= set(out)
    assert len(out["tokens"]) == len(out["scores"]) and out["method"] == "integrated_gradients"
    assert main(["attribute", path, "the cat", "--target-position", "50"]) == 2
    assert capsys.readouterr().err.startswith("error: target position 50")
