"""Property: token character spans always index the caller's exact input text, whatever it contains."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.inspect import encode
from model.load import load_model

ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
    list("the dogs run [MASK] <mask> \u0301\u202e\U0001F600漢字\x00\t\n"))


@pytest.mark.parametrize("arch", ["bert-mlm", "roberta-mlm", "albert-pretraining", "gpt2"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(ALPHABET, min_size=1, max_size=40))
def test_spans_cover_the_input(tiny_models, arch, text):
    m = load_model(tiny_models[arch])
    if not text.strip():
        with pytest.raises(ValueError, match="empty"):
            encode(m, text)
        return
    enc = encode(m, text)
    starts = []
    covered = set()
    for t in enc.tokens:
        assert 0 <= t.start <= t.end <= len(text)
        if not t.special:
            starts.append(t.start)
            covered.update(range(t.start, t.end))
    assert starts == sorted(starts)  # pieces come in text order
    if not enc.warnings:  # not truncated: every letter or digit belongs to a token
        for i, c in enumerate(text):
            if c.isalnum() or m.info.model_type in ("gpt2", "roberta") and not c.isspace():
                assert i in covered, (i, c, text)
