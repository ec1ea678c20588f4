"""One format from SFT to eval: SFT from HH dialogues, the chat template end to end, stop strings."""

import dataclasses
import json

import pytest
import torch

from kfrlhf.common import models
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.sampling import answer_ends, generate
from kfrlhf.data import loaders
from kfrlhf.data.config import DataConfig
from kfrlhf.data.stage import run as prepare_data
from kfrlhf.pipelines.definitions import run_config as config

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
HH = [
    {
        "chosen": f"\n\nHuman: Hi {i}?\n\nAssistant: Hello.\n\nHuman: Help me?\n\nAssistant: Sure, how?",
        "rejected": f"\n\nHuman: Hi {i}?\n\nAssistant: Hello.\n\nHuman: Help me?\n\nAssistant: No.",
    }
    for i in range(20)
]


@pytest.fixture
def hh_file(tmp_path):
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in HH))
    return str(path)


@pytest.fixture(scope="module")
def chat_lm_dir(tmp_path_factory):
    """tiny-opt whose tokenizer has a ChatML template (the end of turn is its EOS)."""
    path = tmp_path_factory.mktemp("chat_lm")
    models.load_causal_lm(models.TINY_CAUSAL).save_pretrained(path)
    tok = models.load_tokenizer(models.TINY_CAUSAL)
    tok.chat_template = CHATML
    tok.save_pretrained(path)
    return str(path)


def test_sft_reads_hh_dialogues_as_prompt_plus_chosen(hh_file):
    rows = loaders.load_sft(hh_file, DataConfig())
    assert rows[0]["text"] == HH[0]["chosen"]
    assert rows[0]["question"].endswith("\n\nAssistant:") and rows[0]["response"] == "Sure, how?"


def test_empty_sft_dataset_is_the_chosen_side_split_with_the_pairs(hh_file, tmp_path):
    dirs = [tmp_path / n for n in ("sft", "pref", "prompts")]
    prepare_data(dict(sft_dataset="", preference_dataset=hh_file, prompt_dataset="", eval_fraction=0.25), *dirs)
    sft, pairs, prompts = (read_split(d, "eval") for d in dirs)
    assert [r["text"] for r in sft] == [p["prompt"] + p["chosen"] for p in pairs]
    assert [r["prompt"] for r in prompts] == [p["prompt"] for p in pairs]  # one held-out set of dialogues


def test_chat_template_formats_every_text(hh_file, chat_lm_dir, tmp_path):
    dirs = [tmp_path / n for n in ("sft", "pref", "prompts")]
    data = dict(sft_dataset="", preference_dataset=hh_file, prompt_dataset="", chat_template=chat_lm_dir)
    prepare_data(data, *dirs)
    sft, pair, prompt = (read_split(d, "train")[0] for d in dirs)
    turns = "<|im_start|>user\nHi {}?<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
    i = prompt["prompt"].split("Hi ")[1].split("?")[0]
    expected = turns.format(i) + "<|im_start|>user\nHelp me?<|im_end|>\n<|im_start|>assistant\n"
    assert prompt["prompt"] == expected
    assert pair["prompt"].startswith("<|im_start|>user\n") and pair["chosen"] == "Sure, how?"
    assert sft["text"].endswith("<|im_start|>assistant\nSure, how?<|im_end|>\n") and "Human:" not in sft["text"]


def test_chat_template_must_exist(hh_file, tiny_lm_dir, tmp_path):
    with pytest.raises(ValueError, match="has no chat template"):
        prepare_data(
            dict(preference_dataset=hh_file, chat_template=str(tiny_lm_dir)),
            *(tmp_path / "a", tmp_path / "b", tmp_path / "c"),
        )


def test_generation_stops_where_a_stop_string_begins(chat_lm_dir):
    """Real sampling, the same seed with and without a stop string: each answer is the free one cut before
    the stop string's first character; its last token is the one sampled where the stop string begins
    (kept, not rewritten: PPO scores the token the policy chose)."""
    tok = models.load_tokenizer(chat_lm_dir, padding_side="left")
    model = models.load_pretrained_causal_lm(chat_lm_dir)
    prompts = ["<|im_start|>user\nHow do I take care of tea?<|im_end|>\n<|im_start|>assistant\n"] * 8

    def sample(stop_strings):
        cfg = dataclasses.replace(config.load_config("tiny").ppo, stop_strings=stop_strings, max_prompt_length=32)
        torch.manual_seed(0)
        r = generate(model, tok, prompts, 24, cfg)
        return r, r.texts

    free_r, free = sample([])
    r, cut = sample(["e"])
    assert sum("e" in t for t in free) >= 4  # the untrained model writes the stop string
    for i, (f, c) in enumerate(zip(free, cut)):
        assert f.startswith(c) and "e" not in c and len(c) <= (f.index("e") if "e" in f else len(f))
        n = int(r.mask[i].sum())
        assert torch.equal(r.response_ids[i, :n], free_r.response_ids[i, :n])
        if "e" in f:
            assert r.ended[i] and "e" in tok.decode(r.response_ids[i, :n], skip_special_tokens=True)


def test_an_hh_reply_ends_at_the_next_turn():
    tok = models.load_tokenizer(models.TINY_CAUSAL)
    ids = tok(" Sure.\n\nHuman: and now?", return_tensors="pt")["input_ids"]
    mask, ended, texts = answer_ends(ids, tok, ["\n\nHuman:"])
    n = int(mask[0].sum())
    assert texts == [" Sure."] and ended.tolist() == [True]
    assert tok.decode(ids[0, : n - 1]) == " Sure." and "\n" in tok.decode(ids[0, n - 1 : n])


def test_format_check_refuses_question_answer_sft_with_hh_prompts(hh_file, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "q", "response": "r"}) + "\n")
    cfg = DataConfig(sft_dataset=str(qa), preference_dataset=hh_file)
    assert "one prompt format" in loaders.format_problem(cfg)
    assert loaders.format_problem(dataclasses.replace(cfg, template="\n\nHuman: {question}\n\nAssistant: ")) is None
    tutorial = config.load_config(None, [config.PRESETS_DIR.parent / "configs" / "opt-1.3b_rlhf.yaml"]).data
    assert loaders.format_problem(tutorial) is None
    assert loaders.format_problem(dataclasses.replace(tutorial, template=DataConfig().template))


def test_rlhf_config_refuses_two_formats(capsys):
    from kfrlhf.pipelines.cli import main

    tutorial = str(config.PRESETS_DIR.parent / "configs" / "opt-1.3b_rlhf.yaml")
    assert main(["config", "--preset", "none", "--config", tutorial]) == 0
    assert main(["config", "--preset", "none", "--config", tutorial, "--set", "data.template='Q: {question} A: '"]) == 2
    assert "one prompt format from SFT to eval" in capsys.readouterr().err
