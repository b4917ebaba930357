"""The CLI contract: JSON shapes round-trip, every user error exits 2 with one `error:` line."""
import json
import subprocess
import sys

import pytest

from app.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenize_json(capsys, tiny_models):
    code, out, _ = run(capsys, "tokenize", tiny_models["bert-mlm"], "the dogs run", "--json")
    assert code == 0
    d = json.loads(out)
    assert [t["text"] for t in d["tokens"]] == ["[CLS]", "the", "dogs", "run", "[SEP]"]
    assert set(d["tokens"][0]) >= {"text", "id", "start", "end", "special"}
    assert d["tokens"][2]["start"] == 4 and d["tokens"][2]["end"] == 8


def test_inspect_json_has_the_chosen_head(capsys, tiny_models):
    code, out, _ = run(capsys, "inspect", tiny_models["gpt2"], "the dogs run", "--json", "--layer", 1, "--head", 3)
    assert code == 0
    d = json.loads(out)
    n = len(d["tokens"])
    assert d["num_layers"] == 2 and d["num_heads"] == 4 and (d["layer"], d["head"]) == (1, 3)
    assert len(d["attention"]) == n and all(len(row) == n for row in d["attention"])
    assert all(abs(sum(row) - 1) < 1e-4 for row in d["attention"])
    assert all(row[j] == 0 for i, row in enumerate(d["attention"]) for j in range(i + 1, n))  # causal
    assert len(d["summaries"]["entropy"]) == 2


def test_fill_mask_json(capsys, tiny_models):
    code, out, _ = run(capsys, "fill-mask", tiny_models["bert-mlm"], "the [MASK] run", "--top-k", 3, "--json")
    assert code == 0
    d = json.loads(out)
    assert d["masks"][0]["position"] == 2
    preds = d["masks"][0]["predictions"]
    assert len(preds) == 3 and set(preds[0]) == {"token", "id", "prob"}


def test_text_from_stdin_and_file(capsys, tiny_models, tmp_path, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("hello world"))
    code, out, _ = run(capsys, "tokenize", tiny_models["gpt2"], "-", "--json")
    assert code == 0 and json.loads(out)["num_tokens"] >= 2
    f = tmp_path / "t.txt"
    f.write_bytes(b"\xff\xfe broken")
    code, _, err = run(capsys, "tokenize", tiny_models["gpt2"], "--file", f)
    assert code == 2 and "not valid UTF-8" in err


USER_ERRORS = [
    ("no such model", ["inspect", "/no/such/model", "hi"]),
    ("empty", ["inspect", "{gpt2}", ""]),
    ("empty", ["tokenize", "{gpt2}", "   "]),
    ("no mask token", ["fill-mask", "{bert-mlm}", "no mask here"]),
    ("cannot fill masks", ["fill-mask", "{gpt2}", "the [MASK]"]),
    ("layer 7 is out of range", ["inspect", "{gpt2}", "hi there", "--layer", "7"]),
    ("head 9 is out of range", ["inspect", "{gpt2}", "hi there", "--head", "9"]),
    ("top_k must be", ["fill-mask", "{bert-mlm}", "the [MASK]", "--top-k", "0"]),
    ("invalid choice", ["bogus-command"]),
    ("required", ["inspect"]),
    ("no text given", ["inspect", "{gpt2}"]),
    ("cannot read", ["tokenize", "{gpt2}", "--file", "/no/such/file.txt"]),
]


@pytest.mark.parametrize("needle,argv", USER_ERRORS, ids=[" ".join(a[:2]) + ":" + n for n, a in USER_ERRORS])
def test_user_errors_exit_2_with_one_line(capsys, tiny_models, needle, argv):
    argv = [a.format(**{k: str(v) for k, v in tiny_models.items()}) if a.startswith("{") else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_a_refusal_exits_2_and_a_bug_does_not(capsys, monkeypatch):
    """An LmscopeError raised anywhere under a command is the user's: status 2, its message on one line.
    A plain ValueError is a bug: status 1, named an internal error, and with LMSCOPE_DEBUG=1 its traceback."""
    from app.cli import look
    from model.errors import InputError

    def refuse(args):
        raise InputError("layer 9 is out of range")

    def bug(args):
        raise ValueError("math domain error")

    monkeypatch.setattr(look, "cmd_models", refuse)
    code, out, err = run(capsys, "models")
    assert (code, out, err) == (2, "", "error: layer 9 is out of range\n")
    monkeypatch.setattr(look, "cmd_models", bug)
    code, out, err = run(capsys, "models")
    assert code == 1 and err.startswith("error: internal error (ValueError: math domain error)")
    monkeypatch.setenv("LMSCOPE_DEBUG", "1")
    with pytest.raises(ValueError, match="math domain error"):
        main(["models"])


def test_console_script_runs_as_a_process(tiny_models):
    exe = [sys.executable, "-m", "app.cli"]
    p = subprocess.run(exe + ["inspect", str(tiny_models["bert-mlm"]), "the [MASK] dog", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["masks"]
    p = subprocess.run(exe + ["inspect", "/nope", "x"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr


@pytest.mark.parametrize("penalty,stop", [("0.5", "true"), ("2.0", "never")])
def test_beam_settings_reach_generate(capsys, tiny_models, penalty, stop):
    from model.generate import generate
    from model.load import load_model

    path = str(tiny_models["gpt2"])
    assert main(["generate", path, "the dogs", "--json", "--strategy", "beam", "--num-beams", "3",
                 "--length-penalty", penalty, "--early-stopping", stop, "--max-new-tokens", "6"]) == 0
    got = json.loads(capsys.readouterr().out)["text"]
    want = generate(load_model(path), "the dogs", strategy="beam", num_beams=3, length_penalty=float(penalty),
                    early_stopping={"true": True, "never": "never"}[stop], max_new_tokens=6)
    assert got == want.text
