"""bench.generation measures what it says: each decoder against the same model recomputing the prefix, with
the same tokens (timings are the benchmark's business, not the test's)."""
from bench.generation import Recompute, bench_model
from model.load import load_model


def test_each_strategy_gives_one_figure_with_the_same_tokens(tiny_models):
    m = load_model(tiny_models["gpt2"])
    figs = bench_model(m, "tiny GPT-2", 5)
    assert [f.name for f in figs] == ["generate 5 tok greedy, tiny GPT-2", "generate 5 tok beam 3, tiny GPT-2"]
    assert all("same tokens: yes" in f.note and f.ours > 0 and f.baseline > 0 for f in figs)


def test_the_baseline_really_recomputes_and_a_model_without_a_decoder_is_reported(tiny_models):
    m = load_model(tiny_models["gpt2"])
    assert m.backend.decoder(m.tokenizer("the dogs", return_tensors="pt")["input_ids"]) is not None
    plain = Recompute(m)
    assert plain.backend.decoder(None) is None and plain.backend.vocab_size == m.backend.vocab_size
    [fig] = bench_model(plain, "no decoder", 5)
    assert not fig.passed and fig.note == "no decoder"
