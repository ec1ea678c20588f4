"""Bad input is refused before work: through the real CLI, each case exits non-zero with one
line on stderr naming the problem (file and row where there is one), no traceback, and
`rlhf run --output` left uncreated. `rlhf run` fails in its pre-flight, before any model loads.
"""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import deeplake
import pytest

from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.definitions.run_config import load_config
from kfrlhf.rlaif.constitution import load_constitution
from kfrlhf.rlaif.judge import check_context
from tests.bad_input import fails_cleanly, lines

SFT = {"question": "What is 2+2?", "response": "4"}
PAIR = {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}


def deeplake_pairs(path: Path) -> None:
    """A real deeplake 4 dataset whose columns are not the preference columns."""
    ds = deeplake.create(str(path))
    for name in ("good", "bad"):
        ds.add_column(name, deeplake.types.Text())
    ds.append({"good": ["Hi!"], "bad": ["No."]})
    ds.commit()


# name: (dataset config key, file name, content (bytes, or a builder of a directory), expected text)
DATA_CASES = {
    "malformed-json": (
        "sft_dataset",
        "d.jsonl",
        lines(SFT, b'{"question": "a" "response": "b"}'),
        "d.jsonl line 2: malformed JSON",
    ),
    "not-an-object": ("sft_dataset", "d.jsonl", lines(SFT, [1, 2]), "d.jsonl line 2: expected a JSON object"),
    "missing-column": (
        "sft_dataset",
        "d.jsonl",
        lines({"question": "q"}),
        "no column 'response' (data.response_column)",
    ),
    "misnamed-column": (
        "sft_dataset",
        "d.jsonl",
        lines({"instruction": "q", "response": "r"}),
        "no column 'question' (data.question_column); columns: instruction, response",
    ),
    "empty-text": (
        "sft_dataset",
        "d.jsonl",
        lines(SFT, {"question": "q", "response": ""}),
        "d.jsonl line 2: column 'response' is empty",
    ),
    "whitespace-text": (
        "sft_dataset",
        "d.jsonl",
        lines(SFT, {"question": " \t\n ", "response": "r"}),
        "d.jsonl line 2: column 'question' is empty",
    ),
    "number-as-text": (
        "preference_dataset",
        "p.jsonl",
        lines(PAIR, dict(PAIR, chosen=3)),
        "p.jsonl line 2: column 'chosen' is int, expected text",
    ),
    "chosen-equals-rejected": (
        "preference_dataset",
        "p.jsonl",
        lines(PAIR, dict(PAIR, rejected="Hi! ")),
        "p.jsonl line 2: chosen and rejected are the same text",
    ),
    "non-utf8": (
        "sft_dataset",
        "d.jsonl",
        lines(SFT, b'{"question": "caf\xe9", "response": "r"}'),
        "d.jsonl line 2: not valid UTF-8 (byte 0xe9",
    ),
    "huge-row": (
        "sft_dataset",
        "d.jsonl",
        lines(SFT, {"question": "q", "response": "x" * 1_000_001}),
        "d.jsonl line 2: column 'response' has 1,000,001 characters, more than the 1,000,000 allowed",
    ),
    "empty-file": ("prompt_dataset", "q.jsonl", b"", "q.jsonl: no rows"),
    "blank-lines-only": ("prompt_dataset", "q.jsonl", b"\n \n", "q.jsonl: no rows"),
    "missing-file": ("sft_dataset", "nope.jsonl", None, "nope.jsonl: no such file or directory"),
    "unsupported-type": ("sft_dataset", "d.txt", b"question,response\n", "d.txt: unsupported file type"),
    "deeplake-wrong-schema": (
        "preference_dataset",
        "dl",
        deeplake_pairs,
        "no column 'chosen' (data.chosen_column); columns: good, bad",
    ),
    "lone-surrogate": (
        "sft_dataset",
        "d.jsonl",
        lines(SFT, b'{"question": "q\\ud800", "response": "r"}'),
        "d.jsonl line 2: column 'question' has an invalid character (a lone surrogate) at 1",
    ),
    "zero-width-answer": (
        "sft_dataset",
        "d.jsonl",
        lines(SFT, {"question": "q", "response": "\u200b\u200b\ufeff"}),
        "d.jsonl line 2: column 'response' is empty (only invisible characters)",
    ),
    "duplicate-json-key": (
        "sft_dataset",
        "d.jsonl",
        lines(SFT, b'{"question": "a", "response": "r", "question": "b"}'),
        "d.jsonl line 2: key 'question' given twice",
    ),
    "hh-chosen-plain-rejected": (
        "preference_dataset",
        "p.jsonl",
        lines(PAIR, {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "No."}),
        "p.jsonl line 2: only column 'chosen' is an HH dialogue",
    ),
    "mistyped-local-path": ("sft_dataset", "data/train.csv", None, "data/train.csv: no such file or directory"),
    "broken-csv": ("sft_dataset", "d.csv", b'question,response\n"a,b\n', "d.csv: could not be loaded as a CSV file"),
    "broken-parquet": ("sft_dataset", "d.parquet", b"PAR", "d.parquet: could not be loaded as a Parquet file"),
    "later-column-refused-by-row": (
        "prompt_dataset",
        "q.jsonl",
        lines({"question": "q1"}, {"prompt": "p2"}),
        "q.jsonl line 2: missing column 'question'",
    ),
    "too-few-rows": (
        "prompt_dataset",
        "q.jsonl",
        lines(*[{"prompt": f"p{i}"} for i in range(3)]),
        "q.jsonl: 3 rows leave 1 held out at data.eval_fraction 0.1; at least 2 are needed",
    ),
}

# name: (YAML config file text or None, extra CLI arguments, expected text)
CONFIG_CASES = {
    "unknown-section-key": ("ppo:\n  stepz: 3\n", [], "unknown key ppo.stepz"),
    "unknown-top-key": ("trainer: {}\n", [], "unknown key trainer"),
    "string-for-int": ("ppo:\n  steps: ten\n", [], "ppo.steps: expected an integer, got 'ten'"),
    "float-for-int": (None, ["--set", "sft.max_steps=2.5"], "sft.max_steps: expected an integer, got 2.5"),
    "bool-as-3": ("sft:\n  packing: 3\n", [], "sft.packing: expected true/false, got 3"),
    "list-for-section": ("ppo: [1, 2]\n", [], "ppo: expected a mapping"),
    "batch-not-divisible": (
        None,
        ["--set", "ppo.batch_size=30", "--set", "ppo.mini_batch_size=8"],
        "ppo.batch_size (30) must be divisible by ppo.mini_batch_size (8)",
    ),
    "negative-lr": ("sft:\n  learning_rate: -1e-4\n", [], "sft.learning_rate must be > 0, got -0.0001"),
    "zero-lora-r": (None, ["--set", "ppo.lora_r=0"], "ppo.lora_r must be > 0, got 0"),
    "model-dir-without-config": (None, ["--set", "sft.model_name=."], "sft.model_name: . holds no config.json"),
    "missing-model-dir": (
        None,
        ["--set", "reward.model_name=./no-such-model"],
        "reward.model_name: ./no-such-model: no such directory",
    ),
    "zero-eval-prompts": (None, ["--set", "eval.num_prompts=0"], "eval.num_prompts must be > 0, got 0"),
    "negative-kl-limit": (None, ["--set", "ppo.kl_limit=-1"], "ppo.kl_limit must be >= 0, got -1.0"),
    "short-seq-length": (None, ["--set", "sft.seq_length=4"], "sft.seq_length must be >= 8 tokens, got 4"),
    "min-above-max-tokens": (None, ["--set", "ppo.min_new_tokens=64"], "ppo.min_new_tokens must be > 0 and <="),
    "eval-fraction-one": (None, ["--set", "data.eval_fraction=1"], "data.eval_fraction must be > 0 and at most 0.5"),
    "unknown-report-to": ("report_to: mlflow\n", [], "report_to must be wandb, tensorboard or none"),
    "template-without-question": ("data:\n  template: 'Q: {query}'\n", [], "data.template must contain {question}"),
    "unknown-preset": (None, ["--preset", "huge"], "unknown preset 'huge' (known: small, tiny)"),
    "missing-config": (None, ["--config", "absent.yaml"], "config file absent.yaml does not exist"),
    "invalid-yaml": ("ppo:\n  steps: [1,\n", [], "bad.yaml is not valid YAML: expected the node content"),
    "not-a-mapping": ("- ppo\n", [], "bad.yaml: expected a mapping with one section per stage"),
    "config-not-utf8": (b"ppo:\n  steps: caf\xe9\n", [], "bad.yaml cannot be read"),
    "set-without-equals": (None, ["--set", "ppo.steps"], "--set 'ppo.steps': expected KEY=VALUE"),
    "set-invalid-yaml": (None, ["--set", "ppo.steps=[3"], "--set 'ppo.steps=[3': the value is not valid YAML"),
    "set-inf-steps": (None, ["--set", "ppo.steps=.inf"], "ppo.steps must be a finite number, got inf"),
    "inf-learning-rate": (None, ["--set", "sft.learning_rate=inf"], "sft.learning_rate must be a finite number"),
    "nan-target-kl": ("ppo:\n  target_kl: .nan\n", [], "ppo.target_kl must be a finite number, got nan"),
    "inf-kl-bound": (None, ["--set", "eval.kl_bound=.inf"], "eval.kl_bound must be a finite number, got inf"),
    "inf-cliprange": (None, ["--set", "ppo.cliprange=-.inf"], "ppo.cliprange must be a finite number, got -inf"),
    "set-section-then-key": (
        None,
        ["--set", "ppo=1", "--set", "ppo.steps=2"],
        "--set 'ppo.steps=2' conflicts with --set ppo=...",
    ),
    "set-key-then-section": (
        None,
        ["--set", "ppo.steps=2", "--set", "ppo=1"],
        "--set 'ppo=1' conflicts with --set ppo.<key>=...",
    ),
    "yaml-alias-bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\ndata:\n  template: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
        [],
        "YAML aliases (*name) are not supported at line 2",
    ),
    "duplicate-section": ("ppo:\n  steps: 3\nppo:\n  steps: 4\n", [], "key 'ppo' given twice at line 3"),
    "duplicate-key": ("sft:\n  max_steps: 3\n  max_steps: 4\n", [], "key 'max_steps' given twice at line 3"),
    "absurd-steps": (None, ["--set", "ppo.steps=1.0e+26"], "ppo.steps must be at most 2,147,483,647, got 1e+26"),
    "seq-length-beyond-positions": (
        None,
        ["--set", "sft.seq_length=4096"],
        "sft.seq_length (4096) exceeds the 512 positions of sft model tiny-opt",
    ),
    "max-new-tokens-100000": (
        None,
        ["--set", "eval.max_new_tokens=100000"],
        "eval.max_new_tokens (100000) exceeds reward.max_length (64)",
    ),
    "missing-lora-target": (
        None,
        ["--set", "sft.lora_target_modules=[q_proj, query_key_value]"],
        "sft.lora_target_modules: query_key_value not in tiny-opt (its layers: ",
    ),
    "max-rows-3": (None, ["--set", "data.max_rows=3"], "sample: 3 rows leave 1 held out"),
    "yaml12-sexagesimal": (None, ["--set", "ppo.steps=1:30"], "ppo.steps: expected an integer, got '1:30'"),
    "yaml11-no-is-not-false": ("sft:\n  packing: no\n", [], "sft.packing: expected true/false, got 'no'"),
    "yaml12-octal-looking-int": ("ppo:\n  batch_size: 010\n", [], "ppo.batch_size (10) must be divisible"),
    "rest-iterations-huge": (None, ["--set", "rest.iterations=100000"], "rest.iterations must be from 1 to 50"),
    "chat-template-missing-dir": (None, ["--set", "data.chat_template=./nope"], "data.chat_template './nope': no such"),
    "chat-template-without-one": (None, ["--set", "data.chat_template=tiny-opt"], "has no chat template"),
}

# name: (argv, expected text): command-line mistakes outside the config.
CLI_CASES = {
    "empty-output": (["run", "--output", ""], "--output must name a directory, got an empty string"),
    "data-check-non-data-set": (
        ["data", "check", "--format", "sft", "--set", "ppo.steps=3", "d.jsonl"],
        "data check: --set takes data.* keys only, got ppo",
    ),
    "submit-dead-port": (
        ["submit", "--host", "http://127.0.0.1:9", "--preset", "tiny"],
        "cannot reach the KFP API at http://127.0.0.1:9: ",
    ),
}

MODEL = {"m/config.json": b"{}", "m/model.safetensors": b"", "m/tokenizer.json": b"{}"}  # enough to resolve
RUN = {"run/report.json": json.dumps({"models": {"sft": "gone/sft", "tuned": "gone/tuned"}}).encode()}
GEN = ["generate", "--model", "m"]
SUBMIT = ["submit", "--host", "http://127.0.0.1:9"]
TRAINJOB = ["render-trainjob", "--stage", "ppo", "--nodes", "1", "--gpus-per-node", "1"]


def report(**values) -> dict:
    return {"run/report.json": json.dumps(values).encode() if values else b'{"reward_gain": 1'}


# name: (files to create {path: bytes}, argv, expected text): commands other than `rlhf run` and their files.
FILE_CASES = {
    # read what users give the way they mean it
    "prompts-empty-file": ({**MODEL, "p.txt": b""}, [*GEN, "--prompts", "p.txt"], "p.txt: no prompts"),
    "prompts-gzip-jsonl-row-without-prompt": (
        {**MODEL, "p.DATA": gzip.compress(b'{"prompt": "a"}\n{"text": "b"}\n')},
        [*GEN, "--prompts", "p.DATA"],
        "p.DATA row 2: expected a `prompt` or `question` string",
    ),
    "prompts-json-array-empty-prompt": (
        {**MODEL, "p.txt": b'[{"prompt": " "}]'},
        [*GEN, "--prompts", "p.txt"],
        "p.txt row 1: expected a `prompt` or `question` string",
    ),
    "template-without-field": ({**MODEL}, [*GEN, "--prompt", "hi", "--template", "Q: "], "--template must contain"),
    # numeric arguments, Kubernetes names, files checked before any work
    "batch-size-zero": (MODEL, [*GEN, "--prompt", "hi", "--batch-size", "0"], "--batch-size must be from 1 to"),
    "seed-negative": (MODEL, [*GEN, "--prompt", "hi", "--seed", "-1"], "--seed must be from 0 to"),
    "gpus-per-node-negative": ({}, [*TRAINJOB[:-1], "-1"], "--gpus-per-node must be from 0 to 64, got -1"),
    "nodes-zero": ({}, [*TRAINJOB[:4], "0", *TRAINJOB[5:]], "--nodes must be from 1 to 1,024, got 0"),
    "timeout-nan": ({}, [*SUBMIT, "--timeout", "nan"], "--timeout must be from 1 to"),
    "namespace-not-dns-1123": ({}, [*TRAINJOB, "--namespace", "My_Team"], "--namespace 'My_Team' is not a DNS-1123"),
    "service-account-with-space": ({}, [*SUBMIT, "--service-account", "a b"], "--service-account 'a b' is not a DNS"),
    "submit-package-missing": ({}, [*SUBMIT, "--package", "nope.yaml"], "--package nope.yaml: No such file"),
    "submit-package-not-a-pipeline": (
        {"p.yaml": b"a: 1\n"},
        [*SUBMIT, "--package", "p.yaml"],
        "--package p.yaml is not a compiled KFP pipeline",
    ),
    "model-dir-without-weights": (
        {"m/config.json": b"{}", "m/tokenizer.json": b"{}"},
        [*GEN, "--prompt", "hi"],
        "m holds no model weights",
    ),
    "model-dir-without-tokenizer": (
        {"m/config.json": b"{}", "m/model.safetensors": b""},
        [*GEN, "--prompt", "hi"],
        "m holds no tokenizer",
    ),
    # reports other commands read
    "report-truncated": (report(), ["compare", "run"], "run/report.json cannot be read (Expecting"),
    "report-non-finite": (
        {"run/report.json": b'{"reward_gain": NaN, "kl": 1, "win_rate": 0.5}'},
        ["compare", "run"],
        "reward_gain must be a finite number, got nan",
    ),
    "report-missing-keys": (report(reward_gain=1.0), ["compare", "run"], "run/report.json has no kl, win_rate"),
    "report-wrong-shape": ({"run/report.json": b"[1, 2]"}, ["compare", "run"], "expected a JSON object, got list"),
    "run-models-moved": (RUN, ["generate", "--model", "run", "--prompt", "hi"], "the run's sft model run/gone/sft is"),
    "run-config-invalid-yaml": (
        {**RUN, "run/gone/sft/x": b"", "run/gone/tuned/x": b"", "run/config.yaml": b"data: [\n"},
        ["generate", "--model", "run", "--prompt", "hi"],
        "run/config.yaml is not valid YAML",
    ),
    # a new set, in categories beyond the issue's
    "stage-times-wrong-shape": (
        report(reward_gain=1.0, kl=1.0, win_rate=0.5, stage_times_s=[1]),
        ["compare", "run"],
        "stage_times_s must map task names to seconds",
    ),
    "prompts-binary-file": ({**MODEL, "p.txt": b"\xff\xfe\x00a"}, [*GEN, "--prompts", "p.txt"], "not valid UTF-8"),
    "prompts-truncated-gzip": (
        {**MODEL, "p.gz": gzip.compress(b'{"prompt": "a"}\n' * 50)[:30]},
        [*GEN, "--prompts", "p.gz"],
        "p.gz: cannot read the file",
    ),
    "models-prepare-empty-output": ({}, ["models", "prepare", "all-minilm-l6-v2", "--output", ""], "--output must"),
    "compile-empty-output": ({}, ["compile", "--output", " "], "--output must name a directory"),
    "compare-a-file-as-run": ({"r.txt": b"x"}, ["compare", "r.txt"], "r.txt is not a finished run"),
    "report-json-is-a-folder": ({"run/report.json/x": b""}, ["compare", "run"], "run is not a finished run"),
    "render-trainjob-namespace-too-long": ({}, [*TRAINJOB, "--namespace", "a" * 64], "is not a DNS-1123 label"),
}

# What each case stands for; every case is in one (test_every_case_has_a_category).
CATEGORIES = {
    "malformed files": [
        "malformed-json",
        "not-an-object",
        "non-utf8",
        "config-not-utf8",
        "broken-csv",
        "broken-parquet",
    ],
    "schema and columns": ["missing-column", "misnamed-column", "number-as-text", "deeplake-wrong-schema"],
    "empty or invisible text": ["empty-text", "whitespace-text", "zero-width-answer", "empty-file", "blank-lines-only"],
    "invalid unicode": ["lone-surrogate"],
    "preference layout": ["chosen-equals-rejected", "hh-chosen-plain-rejected"],
    "sizes": ["huge-row", "too-few-rows", "max-rows-3"],
    "paths": [
        "missing-file",
        "unsupported-type",
        "mistyped-local-path",
        "empty-output",
        "missing-config",
        "model-dir-without-config",
        "missing-model-dir",
    ],
    "keys and types": ["unknown-section-key", "unknown-top-key", "string-for-int", "float-for-int", "bool-as-3"],
    "structure": ["list-for-section", "not-a-mapping", "invalid-yaml", "unknown-preset", "unknown-report-to"],
    "repeated keys and YAML aliases": ["duplicate-json-key", "duplicate-section", "duplicate-key", "yaml-alias-bomb"],
    "non-finite numbers": ["set-inf-steps", "inf-learning-rate", "nan-target-kl", "inf-kl-bound", "inf-cliprange"],
    "impossible values": [
        "batch-not-divisible",
        "negative-lr",
        "zero-lora-r",
        "zero-eval-prompts",
        "negative-kl-limit",
        "short-seq-length",
        "min-above-max-tokens",
        "eval-fraction-one",
        "template-without-question",
    ],
    "absurd values": ["absurd-steps", "seq-length-beyond-positions", "max-new-tokens-100000", "missing-lora-target"],
    "--set syntax and conflicts": [
        "set-without-equals",
        "set-invalid-yaml",
        "set-section-then-key",
        "set-key-then-section",
    ],
    "commands": ["data-check-non-data-set", "submit-dead-port"],
    "read as meant": [
        "prompts-empty-file",
        "prompts-gzip-jsonl-row-without-prompt",
        "prompts-json-array-empty-prompt",
        "template-without-field",
        "yaml12-sexagesimal",
        "yaml11-no-is-not-false",
        "yaml12-octal-looking-int",
        "later-column-refused-by-row",
    ],
    "checked before work": [
        "batch-size-zero",
        "seed-negative",
        "gpus-per-node-negative",
        "nodes-zero",
        "timeout-nan",
        "namespace-not-dns-1123",
        "service-account-with-space",
        "submit-package-missing",
        "submit-package-not-a-pipeline",
        "model-dir-without-weights",
        "model-dir-without-tokenizer",
        "rest-iterations-huge",
        "chat-template-missing-dir",
        "chat-template-without-one",
    ],
    "reports other commands read": [
        "report-truncated",
        "report-non-finite",
        "report-missing-keys",
        "report-wrong-shape",
        "run-models-moved",
        "run-config-invalid-yaml",
    ],
}
# The new set, written for issue 25 in categories beyond the ones above (docs/reliability.md counts them).
NEW_SET = [
    "stage-times-wrong-shape",
    "prompts-binary-file",
    "prompts-truncated-gzip",
    "models-prepare-empty-output",
    "compile-empty-output",
    "compare-a-file-as-run",
    "report-json-is-a-folder",
    "render-trainjob-namespace-too-long",
]
CATEGORIES["new set"] = NEW_SET


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_stops_run_before_output(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    key, name, content, expected = DATA_CASES[case]
    if callable(content):
        content(tmp_path / name)
    elif content is not None:
        (tmp_path / name).write_bytes(content)
    (tmp_path / "bad.yaml").write_text(f"data:\n  {key}: {name}\n")
    fails_cleanly(capsys, tmp_path, ["run", "--config", "bad.yaml", "--output", "out/x"], expected)


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config_stops_run_before_output(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, extra, expected = CONFIG_CASES[case]
    if text is not None:
        (tmp_path / "bad.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
        extra = ["--config", "bad.yaml", *extra]
    fails_cleanly(capsys, tmp_path, ["run", *extra, "--output", "out/x"], expected)


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_command_line(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, expected = CLI_CASES[case]
    fails_cleanly(capsys, tmp_path, argv, expected)


@pytest.mark.parametrize("case", FILE_CASES)
def test_bad_input_of_other_commands(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files, argv, expected = FILE_CASES[case]
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    fails_cleanly(capsys, tmp_path, argv, expected)


def test_every_case_has_a_category():
    listed = [case for cases in CATEGORIES.values() for case in cases]
    assert sorted(listed) == sorted([*DATA_CASES, *CONFIG_CASES, *CLI_CASES, *FILE_CASES])


def test_an_internal_error_is_caught_by_the_check(capsys, monkeypatch):
    """The line every case is checked against: an unexpected exception type in a command."""
    from kfrlhf.pipelines.local import compare

    monkeypatch.setattr(compare, "compare", lambda runs, output: {}["x"])
    assert main(["compare", "r"]) == 2
    assert capsys.readouterr().err == "rlhf compare: error: KeyError: 'x' (rlhf --debug shows the traceback)\n"


@pytest.mark.parametrize("where", ["pre-flight", "pipeline"])
def test_ctrl_c_is_one_line_and_exit_130(where, capsys, monkeypatch, tmp_path):
    import signal

    from kfrlhf.pipelines.local import run as local_run
    from kfrlhf.pipelines.local.console import Stopped

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt if where == "pre-flight" else Stopped("during [4/9] ppo", signal.SIGINT)

    monkeypatch.setattr(local_run, "run_local", interrupted)
    assert main(["run", "--output", str(tmp_path / "x")]) == 130
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("rlhf run: stopped by Ctrl-C") and "Traceback" not in out + err
    assert ("during [4/9] ppo; to resume" in err) == (where == "pipeline")


def test_accepted_first_row_without_prompt(tmp_path):
    """Documented acceptance: the prompt column is read per row, so a first row without one drops nothing."""
    from kfrlhf.data.config import DataConfig
    from kfrlhf.data.loaders import load_preferences

    path = tmp_path / "p.jsonl"
    path.write_bytes(lines({"chosen": "Hi!", "rejected": "No."}, PAIR))
    assert [r["prompt"] for r in load_preferences(str(path), DataConfig())] == ["", "Say hi."]


def test_accepted_max_steps_below_logging_steps():
    """Documented acceptance: fewer SFT steps than logging_steps log no training loss; the metric is left out
    rather than reported as NaN (which KFP metrics refuse)."""
    from types import SimpleNamespace

    from kfrlhf.common.trainer_args import train_loss_ends

    assert train_loss_ends(SimpleNamespace(state=SimpleNamespace(log_history=[{"eval_loss": 1.0}])), "sft") == {}


def test_data_check_lists_every_problem(capsys, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(lines(PAIR, b"{oops", dict(PAIR, chosen=" "), dict(PAIR, rejected="Hi!"), PAIR, b"\xff"))
    assert main(["data", "check", "--format", "preference", str(path)]) == 1
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"{path} line 2: malformed JSON (Expecting property name enclosed in double quotes at column 2)",
        f"{path} line 3: column 'chosen' is empty",
        f"{path} line 4: chosen and rejected are the same text",
        f"{path} line 6: not valid UTF-8 (byte 0xff at column 1)",
        f"{path}: 4 problem(s)",
    ]


def test_data_check_bad_mapping_is_one_line(capsys, tmp_path):
    fails_cleanly(
        capsys,
        tmp_path,
        ["data", "check", "--format", "sft", "--set", "data.question_colum=x", "d.jsonl"],
        "unknown key data.question_colum",
    )


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="unknown preset"):
        main(["--debug", "run", "--preset", "huge", "--output", "out/x"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["malformed-json", "huge-row"])
def test_installed_rlhf_command(case, tmp_path):
    """The console script itself: exit status, stderr and output directory."""
    key, name, content, expected = DATA_CASES[case]
    (tmp_path / name).write_bytes(content)
    (tmp_path / "bad.yaml").write_text(f"data:\n  {key}: {name}\n")
    rlhf = Path(sys.executable).with_name("rlhf")
    proc = subprocess.run(
        [str(rlhf), "run", "--config", "bad.yaml", "--output", "out/x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("rlhf run: error: "), proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_constitution_too_long_for_the_judge_is_refused_before_work(capsys, tmp_path, monkeypatch):
    """The judge's question (principles + prompt + two answers at their budgets) must fit its positions."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "long.yaml").write_text("".join(f"- Be kind and careful about topic {i} always.\n" for i in range(80)))
    sets = ["rlaif.judge_model=tiny-opt", "rlaif.constitution=long.yaml"]
    argv = ["run", "--pipeline", "rlaif", "--set", sets[0], "--set", sets[1]]
    err = fails_cleanly(capsys, tmp_path, [*argv, "--output", "out/x"], "rlaif.constitution")
    assert "80 principles" in err and "512 positions of the judge 'tiny-opt'" in err
    (tmp_path / "short.yaml").write_text("- Be kind.\n")
    cfg = load_config("tiny", overrides=["rlaif.judge_model=tiny-opt"])
    check_context(cfg.rlaif, load_constitution("short.yaml"))  # fits: no error
