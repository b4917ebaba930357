"""Bad data for `lmscope finetune` / `lmscope distill` (and the Fine-tune page's upload): each case is one
`error: ...` line with exit status 2, no traceback, and nothing written or changed: the data file and the
base models hash the same afterwards and the output directory does not exist."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOOD = "text,label\n" + "".join(f"sentence number {i},{'a' if i % 2 else 'b'}\n" for i in range(20))
FILES = {
    "empty.csv": b"",
    "one-label.csv": ("text,label\n" + "".join(f"s {i},sport\n" for i in range(10))).encode(),
    "no-text-column.csv": ("sentence,label\n" + GOOD.split("\n", 1)[1]).encode(),
    "good.csv": GOOD.encode(),
    "mixed.csv": ("text,label\n" + "".join(f"s {i},{i % 2 if i < 5 else 'word'}\n" for i in range(10))).encode(),
    "latin1.csv": "text,label\ncaf\u00e9 au lait,a\nth\u00e9,b\n".encode("latin-1"),
    "mixed.jsonl": "\n".join(json.dumps({"text": f"s {i}", "label": i if i < 3 else "sport"}) for i in range(8)).encode(),
    "missing-key.jsonl": "\n".join(json.dumps({"text": f"s {i}", "lab": "x"}) for i in range(8)).encode(),
}

# (id, argv after `lmscope`, fragment of the error line); @file = a data file, @tiny/ARCH = a tiny model
CASES = [
    ("empty-file", ["finetune", "@tiny/bert-pretraining", "--data", "@empty.csv"], "is empty"),
    ("one-label", ["finetune", "@tiny/bert-pretraining", "--data", "@one-label.csv"], "only one label"),
    ("missing-column", ["finetune", "@tiny/bert-pretraining", "--data", "@no-text-column.csv"], "has no column 'text'"),
    ("renamed-column", ["finetune", "@tiny/bert-pretraining", "--data", "@good.csv", "--label-column", "category"],
     "has no column 'category' (its columns: text, label)"),
    ("numbers-and-words", ["finetune", "@tiny/gpt2", "--data", "@mixed.csv"], "mix numbers and words"),
    ("numbers-and-words-jsonl", ["finetune", "@tiny/gpt2", "--data", "@mixed.jsonl"], "mix numbers and words"),
    ("missing-key-jsonl", ["finetune", "@tiny/gpt2", "--data", "@missing-key.jsonl"], "has no key 'label'"),
    ("not-utf8", ["finetune", "@tiny/bert-pretraining", "--data", "@latin1.csv"], "not valid UTF-8"),
    ("unknown-task", ["finetune", "@tiny/bert-pretraining", "--data", "toy-nothing"], "no such data file: toy-nothing"),
    ("different-tokenizers", ["distill", "@tiny/gpt2", "--student", "@demo/gpt2", "--corpus", "toyworld"],
     "use different tokenizers"),
    ("no-lm-head", ["finetune", "@tiny/bert-encoder", "--task", "lm", "--data", "toyworld"], "no language-model head"),
    ("elmo-base", ["finetune", "@demo/elmo", "--data", "@good.csv"], "not a transformers model"),
    ("elmo-teacher", ["distill", "@demo/elmo"], "not a transformers model"),
    ("classify-a-pretrained-model", ["classify", "@tiny/bert-pretraining", "some text"], "is not a sequence classifier"),
    ("freeze-more-layers-than-there-are", ["finetune", "@tiny/bert-pretraining", "--data", "@good.csv",
                                           "--freeze-layers", "9"], "has only 2 layers"),
]


def _hash(p: Path) -> str:
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    for name, raw in FILES.items():
        (d / name).write_bytes(raw)
    return d


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_data_is_one_error_line_and_loses_nothing(case, data_dir, tiny_models, tmp_path, capsys):
    _, argv, needle = case
    demo = ROOT / "assets" / "models"

    def path(a: str) -> str:
        if a.startswith("@tiny/"):
            return str(tiny_models[a[6:]])
        if a.startswith("@demo/"):
            return str(demo / a[6:])
        return str(data_dir / a[1:]) if a.startswith("@") else a

    argv = [path(a) for a in argv]
    touched = [Path(a) for a in argv if Path(a).exists()]
    before = {p: _hash(p) for p in touched}
    out = tmp_path / "out"
    if argv[0] in ("finetune", "distill"):
        argv += ["--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not out.exists()
    assert {p: _hash(p) for p in touched} == before


def test_over_the_size_limit_is_refused_before_reading(data_dir, tiny_models, tmp_path, capsys, monkeypatch):
    import model.train.labelled as L

    monkeypatch.setattr(L, "MAX_BYTES", 100)
    assert main(["finetune", str(tiny_models["gpt2"]), "--data", str(data_dir / "good.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "labelled data is limited to 100 bytes" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_pages_upload_refuses_bad_files_with_the_same_messages(data_dir, monkeypatch):
    from model.finetune_jobs import save_labelled_upload, save_typed_examples
    from model.jobs import JobError

    for name, needle in (("empty.csv", "is empty"), ("one-label.csv", "only one label"),
                         ("mixed.csv", "mix numbers and words"), ("latin1.csv", "not valid UTF-8")):
        with pytest.raises(JobError, match=needle):
            save_labelled_upload("session-x", name, (data_dir / name).read_bytes())
    monkeypatch.setenv("LMSCOPE_MAX_UPLOAD_MB", "0.0001")
    with pytest.raises(JobError, match="accepts labelled data up to"):
        save_labelled_upload("session-x", "good.csv", (data_dir / "good.csv").read_bytes())
    with pytest.raises(JobError, match="not `label: text`"):
        save_typed_examples("session-x", "no colon here")
