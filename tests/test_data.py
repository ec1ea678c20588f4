"""The data layer: every loader on every local format, column mapping, HH parsing, errors."""

import gzip
import json
import sys
import types
from pathlib import Path

import datasets
import deeplake
import pytest

from kfrlhf.common.config import ConfigError
from kfrlhf.data import loaders as data
from kfrlhf.data.config import DataConfig
from tests.conftest import HH_DATA, HH_FILE, need

CFG = DataConfig()
SFT_ROWS = [
    {"question": "What is 2+2?", "response": "4", "system_prompt": "You are terse."},
    {"question": " Name a colour. ", "response": "Blue.", "system_prompt": ""},
]
PREF_ROWS = [
    {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
    {"prompt": "Count to 2.", "chosen": "1, 2", "rejected": "3"},
]
HH_ROWS = [
    {
        "chosen": "\n\nHuman: Hi?\n\nAssistant: Hello.\n\nHuman: Help me?\n\nAssistant: Sure, how?",
        "rejected": "\n\nHuman: Hi?\n\nAssistant: Hello.\n\nHuman: Help me?\n\nAssistant: No.",
    },
    {"chosen": "\n\nHuman: Q\n\nAssistant: A", "rejected": "\n\nHuman: Q\n\nAssistant: B"},
]


def jsonl(path: Path, rows, gz=False) -> str:
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return str(path)


def json_array(path: Path, rows) -> str:
    path.write_text(json.dumps(rows, indent=1))
    return str(path)


def hf_dir(path: Path, rows, dict_split=None) -> str:
    ds = datasets.Dataset.from_list(rows)
    (datasets.DatasetDict({dict_split: ds}) if dict_split else ds).save_to_disk(str(path))
    return str(path)


def exported(path: Path, rows) -> str:
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(path)) if path.suffix == ".parquet" else ds.to_csv(str(path), index=False)
    return str(path)


def deeplake_dir(path: Path, rows) -> str:
    ds = deeplake.create(str(path))
    for name in rows[0]:
        ds.add_column(name, deeplake.types.Text())
    ds.append({name: [r[name] for r in rows] for name in rows[0]})  # column-wise batch
    ds.commit()
    return str(path)


FORMATS = {
    "jsonl": lambda tmp, rows: jsonl(tmp / "d.jsonl", rows),
    "jsonl.gz": lambda tmp, rows: jsonl(tmp / "d.jsonl.gz", rows, gz=True),
    "json-array": lambda tmp, rows: json_array(tmp / "d.json", rows),
    "hf-dataset": lambda tmp, rows: hf_dir(tmp / "hf", rows),
    "hf-datasetdict": lambda tmp, rows: hf_dir(tmp / "hfd", rows, dict_split="train"),
    "deeplake": lambda tmp, rows: deeplake_dir(tmp / "dl", rows),
    "parquet": lambda tmp, rows: exported(tmp / "d.parquet", rows),
    "csv": lambda tmp, rows: exported(tmp / "d.csv", rows),
}


def _sub(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir()
    return tmp_path / name


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_loader_on_every_format(tmp_path, fmt):
    make = FORMATS[fmt]
    sft = data.load_sft(make(_sub(tmp_path, "s"), SFT_ROWS), CFG)
    assert sft[0] == {
        "question": "What is 2+2?",
        "response": "4",
        "system_prompt": "You are terse.",
        "text": "You are terse.\nQuestion: What is 2+2?\n\nAnswer: 4",
    }
    assert sft[1]["text"] == "Question: Name a colour.\n\nAnswer: Blue." and sft[1]["system_prompt"] == ""

    assert data.load_preferences(make(_sub(tmp_path, "p"), PREF_ROWS), CFG) == PREF_ROWS

    hh = data.load_preferences(make(_sub(tmp_path, "h"), HH_ROWS), CFG)
    assert hh[0] == {
        "prompt": "\n\nHuman: Hi?\n\nAssistant: Hello.\n\nHuman: Help me?\n\nAssistant:",
        "chosen": " Sure, how?",
        "rejected": " No.",
    }
    assert data.load_prompts(make(_sub(tmp_path, "q"), HH_ROWS), CFG)[1] == {"prompt": "\n\nHuman: Q\n\nAssistant:"}


def test_sample_source_ignores_column_mapping(monkeypatch):
    import kfrlhf.common

    fake = types.SimpleNamespace(
        sft_records=lambda n, seed: [{"question": f"q{seed}", "response": "r", "system_prompt": ""}] * n,
        preference_records=lambda n, seed: PREF_ROWS[:n],
        prompt_records=lambda n, seed: [{"prompt": "p"}] * n,
    )
    monkeypatch.setitem(sys.modules, "kfrlhf.common.sample_data", fake)
    monkeypatch.setattr(kfrlhf.common, "sample_data", fake)
    cfg = DataConfig(question_column="instruction", chosen_column="good", max_rows=2, seed=7)
    assert data.load_sft("sample", cfg)[0]["text"] == "Question: q7\n\nAnswer: r"  # sft: seed + 0
    assert data.load_preferences("sample", cfg) == PREF_ROWS
    assert data.load_prompts("sample", cfg) == [{"prompt": "p"}] * 2


def test_real_sample_module():
    pytest.importorskip("kfrlhf.common.sample_data")
    cfg = DataConfig(max_rows=20)
    assert len(data.load_sft("sample", cfg)) == 20
    prefs, prompts = data.load_preferences("sample", cfg), data.load_prompts("sample", cfg)
    assert len(prefs) == len(prompts) == 20
    assert [p["prompt"] for p in prefs] != [p["prompt"] for p in prompts]
    assert data.check("sample", "preference", DataConfig()) == []


def test_read_rows_numbers_and_max_rows(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": "1"}\n\n{"a": "2"}\n{"a": "3"}\n')
    assert list(data.read_rows(str(path))) == [(1, {"a": "1"}), (3, {"a": "2"}), (4, {"a": "3"})]
    assert len(list(data.read_rows(str(path), max_rows=2))) == 2
    assert len(data.load_sft(jsonl(tmp_path / "s.jsonl", SFT_ROWS * 5), DataConfig(max_rows=3))) == 3


def test_datasetdict_split_and_missing_split(tmp_path):
    src = hf_dir(tmp_path / "hfd", PREF_ROWS, dict_split="test")
    assert data.load_preferences(src, DataConfig(split="test")) == PREF_ROWS
    with pytest.raises(data.DataError, match=r"no split 'train' \(splits: test; set data.split\)"):
        data.load_preferences(src, CFG)


def test_column_mapping(tmp_path):
    cfg = DataConfig(
        question_column="instruction",
        response_column="output",
        system_column="sys",
        chosen_column="good",
        rejected_column="bad",
        prompt_column="query",
        template="Q: {question}\nA: ",
    )
    sft = data.load_sft(jsonl(tmp_path / "s.jsonl", [{"instruction": "Hi", "output": "Yo", "sys": "Be nice."}]), cfg)
    assert sft == [{"question": "Hi", "response": "Yo", "system_prompt": "Be nice.", "text": "Be nice.\nQ: Hi\nA: Yo"}]
    pref = jsonl(tmp_path / "p.jsonl", [{"query": "Q", "good": "A", "bad": "B"}])
    assert data.load_preferences(pref, cfg) == [{"prompt": "Q", "chosen": "A", "rejected": "B"}]
    assert data.load_prompts(pref, cfg) == [{"prompt": "Q"}]
    questions = deeplake_dir(tmp_path / "dl", [{"instruction": "Why?"}])
    assert data.load_prompts(questions, cfg) == [{"prompt": "Q: Why?\nA: "}]


def test_prompts_from_hh_pairs_use_the_shared_prompt(tmp_path):
    fake_turn = {
        "chosen": "\n\nHuman: A?\n\nAssistant: B. Human: fake\n\nAssistant: C.",
        "rejected": "\n\nHuman: A?\n\nAssistant: D.",
    }
    src = jsonl(tmp_path / "h.jsonl", [fake_turn])
    assert data.load_prompts(src, CFG) == [{"prompt": "\n\nHuman: A?\n\nAssistant:"}]
    only_chosen = jsonl(tmp_path / "c.jsonl", [{"chosen": fake_turn["chosen"]}])
    assert data.load_prompts(only_chosen, CFG)[0]["prompt"].endswith("Human: fake\n\nAssistant:")


def test_preferences_without_prompt_and_not_hh(tmp_path):
    src = jsonl(tmp_path / "p.jsonl", [{"chosen": "good text", "rejected": "bad text"}])
    assert data.load_preferences(src, CFG) == [{"prompt": "", "chosen": "good text", "rejected": "bad text"}]
    with pytest.raises(data.DataError, match=r"p.jsonl line 1: column 'chosen' is not an HH dialogue"):
        data.load_prompts(src, CFG)


def test_hh_pair_with_empty_reply_is_skipped(tmp_path, caplog):
    rows = HH_ROWS + [{"chosen": "\n\nHuman: Q\n\nAssistant: ", "rejected": "\n\nHuman: Q\n\nAssistant: B"}]
    assert len(data.load_preferences(jsonl(tmp_path / "h.jsonl", rows), CFG)) == 2
    assert "skipped 1 of 3 rows" in caplog.text and "line 3" in caplog.text


def test_write_and_read_jsonl_roundtrip(tmp_path):
    rows = [{"prompt": "héllo ✓", "n": 1}]
    for name in ("out/a.jsonl", "out/b.jsonl.gz"):
        path = data.write_jsonl(rows, tmp_path / name)
        assert data.read_jsonl(path) == rows
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jsonl", "b.jsonl.gz"]  # no temp files left


def test_split_train_eval_is_deterministic():
    rows = list(range(100))
    train, held = data.split_train_eval(rows, 0.1, seed=3)
    assert len(held) == 10 and sorted(train + held) == rows and train == sorted(train)
    assert data.split_train_eval(rows, 0.1, seed=3) == (train, held)
    assert data.split_train_eval(rows, 0.1, seed=4)[1] != held
    assert data.split_train_eval([1], 0.5, 0) == ([1], [])


# --- errors: each names the source, the row and the problem --------------------------------


def test_malformed_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(PREF_ROWS[0]) + '\n{"chosen": "x", \n' + json.dumps(PREF_ROWS[1]) + "\n")
    with pytest.raises(data.DataError, match=rf"^{path} line 2: malformed JSON \(Expecting property name"):
        data.load_preferences(str(path), CFG)


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "latin1.jsonl"
    latin1 = '{"question": "caf\xe9", "response": "x"}\n'.encode("latin-1")
    path.write_bytes(json.dumps(SFT_ROWS[0]).encode() + b"\n" + latin1)
    with pytest.raises(data.DataError, match=r"line 2: not valid UTF-8 \(byte 0xe9 at column 18\)"):
        data.load_sft(str(path), CFG)


def test_missing_column_names_existing_columns_and_config_key(tmp_path):
    src = jsonl(tmp_path / "s.jsonl", [{"instruction": "Hi", "output": "Yo"}])
    expected = r"s.jsonl: no column 'question' \(data.question_column\); columns: instruction, output"
    with pytest.raises(data.DataError, match=expected):
        data.load_sft(src, CFG)


def test_empty_and_non_string_text(tmp_path):
    src = jsonl(tmp_path / "s.jsonl", [SFT_ROWS[0], {"question": "  ", "response": "x"}])
    with pytest.raises(data.DataError, match=r"s.jsonl line 2: column 'question' is empty"):
        data.load_sft(src, CFG)
    src = jsonl(tmp_path / "t.jsonl", [{"question": "q", "response": 7}])
    with pytest.raises(data.DataError, match=r"line 1: column 'response' is int, expected text"):
        data.load_sft(src, CFG)


def test_chosen_equals_rejected(tmp_path):
    src = hf_dir(tmp_path / "hf", [PREF_ROWS[0], {"prompt": "p", "chosen": "same", "rejected": "same "}])
    with pytest.raises(data.DataError, match=r"hf row 2: chosen and rejected are the same text"):
        data.load_preferences(src, CFG)


def test_empty_sources(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(data.DataError, match=r"empty.jsonl: no rows"):
        data.load_sft(str(tmp_path / "empty.jsonl"), CFG)
    empty_dl = deeplake.create(str(tmp_path / "dl"))
    empty_dl.add_column("prompt", deeplake.types.Text())
    empty_dl.commit()
    with pytest.raises(data.DataError, match=r"dl: no rows"):
        data.load_prompts(str(tmp_path / "dl"), CFG)


def test_deeplake_wrong_schema(tmp_path):
    ds = deeplake.create(str(tmp_path / "dl"))
    ds.add_column("text", deeplake.types.Text())
    ds.add_column("score", deeplake.types.Int32())
    ds.append({"text": ["a"], "score": [1]})
    ds.commit()
    with pytest.raises(data.DataError, match=r"dl: no column 'chosen' \(data.chosen_column\); columns: text, score"):
        data.load_preferences(str(tmp_path / "dl"), CFG)
    cfg = DataConfig(prompt_column="score")
    with pytest.raises(data.DataError, match=r"dl row 1: column 'score' is int, expected text"):
        data.load_prompts(str(tmp_path / "dl"), cfg)


def test_unreadable_sources(tmp_path):
    with pytest.raises(data.DataError, match=r"nowhere.jsonl: no such file or directory"):
        data.load_sft(str(tmp_path / "nowhere.jsonl"), CFG)
    (tmp_path / "x.jsonl.gz").write_bytes(b"\x1f\x8b not gzip after its magic bytes")
    with pytest.raises(data.DataError, match=r"x.jsonl.gz: cannot read the file"):
        data.load_sft(str(tmp_path / "x.jsonl.gz"), CFG)
    with pytest.raises(data.DataError, match=r"^al://nobody/nothing: could not open the deeplake dataset"):
        data.load_prompts("al://nobody/nothing", CFG)


def test_hub_id_that_cannot_be_loaded(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying the network
    with pytest.raises(data.DataError, match=r"^nobody/no-such-dataset: could not be loaded as a Hugging Face hub"):
        data.load_preferences("nobody/no-such-dataset", CFG)


def test_bad_template():
    with pytest.raises(ConfigError, match="data.template must contain"):
        data.load_sft("unused.jsonl", DataConfig(template="Q: {query}"))


def test_check_lists_every_problem(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [
        json.dumps(PREF_ROWS[0]),
        "{oops",
        json.dumps({"prompt": "p", "chosen": "", "rejected": "r"}),
        json.dumps({"prompt": "p", "chosen": "s", "rejected": "s"}),
        json.dumps(PREF_ROWS[1]),
    ]
    path.write_text("\n".join(lines) + "\n")
    problems = data.check(str(path), "preference", CFG)
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path} line {n}" for n in (2, 3, 4)]
    assert all("\n" not in p for p in problems)
    assert data.check(jsonl(tmp_path / "ok.jsonl", PREF_ROWS), "preference", CFG) == []
    assert data.check(str(path), "sft", CFG) == problems  # read as SFT: the chosen side, the same problems
    schema = f"{path}: no column 'question' (data.question_column); columns: prompt, rejected"
    path.write_text(json.dumps({"prompt": "p", "rejected": "r"}) + "\n")
    assert data.check(str(path), "sft", CFG) == [schema]


def test_real_hh_file_through_the_loaders():
    path = need(HH_FILE, HH_DATA)
    prefs = data.load_preferences(str(path), CFG)
    assert len(prefs) == 2308  # 2,312 pairs less the 4 whose chosen reply is empty
    assert all(p["prompt"].endswith("\n\nAssistant:") and p["chosen"].strip() and p["rejected"].strip() for p in prefs)
    assert len(data.load_prompts(str(path), CFG)) == 2312
    assert data.check(str(path), "preference", CFG) == []


def test_sample_pairs_match_in_length_so_the_reward_must_learn_content():
    from kfrlhf.common import sample_data

    pairs = sample_data.preference_records(500)
    assert all(len(p["chosen"]) == len(p["rejected"]) for p in pairs)
    assert len({p["chosen"] for p in pairs}) > 100  # and they still vary
