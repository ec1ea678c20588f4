import pytest
import torch

from kfrlhf.common.models import RewardScorer, load_tokenizer
from kfrlhf.reward.stage import reward_quality
from tests.conftest import preference_rows


def test_reward_model_learns_the_sample_preference(reward_dir):
    path, metrics = reward_dir
    assert metrics["reward_accuracy"] >= 0.9
    # Fresh pairs from another seed, scored through the saved model.
    assert reward_quality(RewardScorer(str(path)), preference_rows(100, seed=99))["reward_accuracy"] >= 0.9


def test_untrained_reward_model_is_near_chance(tmp_path):
    from kfrlhf.common.models import load_reward_model, load_tokenizer

    load_reward_model("tiny-deberta").save_pretrained(tmp_path)
    load_tokenizer("tiny-deberta").save_pretrained(tmp_path)
    assert reward_quality(RewardScorer(str(tmp_path)), preference_rows(100, seed=99))["reward_accuracy"] < 0.9


def test_quality_gate_stops_a_model_that_did_not_learn(tmp_path):
    from kfrlhf.pipelines.definitions import run_config as config
    from kfrlhf.reward.stage import RewardGateError, train_reward

    cfg = config.load_config("tiny").reward
    cfg.max_steps, cfg.eval_steps, cfg.learning_rate, cfg.min_accuracy = 1, 1, 1e-9, 0.99
    rows = preference_rows(120)
    with pytest.raises(RewardGateError, match=r"pair accuracy 0\.\d+ < reward.min_accuracy 0.99 on 20 held-out pairs"):
        train_reward(cfg, rows[:100], rows[100:], tmp_path)
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "model" / "model.safetensors").exists()


def test_metrics_carry_the_length_bias_probe(reward_dir):
    assert -1.0 <= reward_dir[1]["reward_length_correlation"] <= 1.0


def test_a_bert_reward_model_without_eos_trains_and_long_pairs_are_cut_not_dropped(tmp_path, monkeypatch):
    """BERT-family tokenizers have no EOS (TRL's RewardTrainer crashed on them); pairs over max_length
    have their prompt cut from the left and are counted, none is dropped."""
    import re

    import trl
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from kfrlhf.pipelines.definitions import run_config as config
    from kfrlhf.reward.stage import train_reward

    rows = preference_rows(40)
    words = sorted(
        {w for r in rows for k in ("prompt", "chosen", "rejected") for w in re.findall(r"\w+|[^\w\s]", r[k])}
    )
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    assert tok.eos_token is None
    bert = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(bert).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")

    sizes = []
    init = trl.RewardTrainer.__init__

    def spy(self, *args, **kw):
        init(self, *args, **kw)
        sizes.append((len(self.train_dataset), len(self.eval_dataset)))

    monkeypatch.setattr(trl.RewardTrainer, "__init__", spy)
    cfg = config.load_config("tiny").reward
    cfg.model_name, cfg.max_length, cfg.max_steps, cfg.min_accuracy = str(tmp_path / "base"), 16, 3, 0.0
    metrics = train_reward(cfg, rows[:30], rows[30:], tmp_path / "out")
    assert sizes == [(30, 10)]  # nothing dropped
    assert 0 < metrics["reward_truncated_train_pairs"] <= 30 and 0 < metrics["reward_truncated_eval_pairs"] <= 10
    saved = load_tokenizer(str(tmp_path / "out" / "model"))
    assert saved.eos_token == "[SEP]" and saved.model_max_length == 16


def test_length_baselines_and_standard_errors():
    from kfrlhf.reward.stage import length_baselines

    rows = [{"chosen": "a" * c, "rejected": "a" * r} for c, r in [(1, 2), (1, 3), (2, 1), (2, 2)]]
    # The model is right on pairs 1, 2 and 3; "shorter wins" is right on 1 and 2, and half right on the tie.
    m = length_baselines(rows, torch.tensor([1.0, 1.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert m["reward_longer_wins"] == 0.375 and m["reward_shorter_wins"] == 0.625
    assert m["reward_margin_over_length"] == pytest.approx(0.75 - 0.625)
    assert m["reward_accuracy_stderr"] == pytest.approx(0.5 / 2)  # std of (1, 1, 1, 0) / sqrt(4)
    assert m["reward_margin_over_length_stderr"] == pytest.approx(torch.tensor([0.0, 0.0, 1.0, -0.5]).std().item() / 2)


def test_warm_start_fits_the_head_on_frozen_features():
    """On the scorer's inputs: prompts longer than max_length are cut from the left, so the answers
    (the only difference between chosen and rejected) stay in what the head is fitted on."""
    from kfrlhf.common.models import load_reward_model, load_tokenizer, reward_inputs
    from kfrlhf.reward.warm_start import warm_start_head

    model, tok = load_reward_model("tiny-deberta"), load_tokenizer("tiny-deberta")
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "classifier" not in k}
    rows = preference_rows(200)[:150]
    prompts = [" ".join(["tea"] * 80) + " " + r["prompt"] for r in rows]
    pairs = [reward_inputs(tok, prompts, [r[side] for r in rows], max_length=64)[0] for side in ("chosen", "rejected")]
    metrics = warm_start_head(model, tok, *pairs)
    assert metrics["reward_warm_start_pairs"] == 150 and metrics["reward_warm_start_accuracy"] >= 0.9
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())  # only the head moved


def test_warm_start_saves_the_probe_the_eval_takes_as_second_judge(tmp_path, tiny_lm_dir):
    """The probe is the warm-started head on the encoder as it was before fine-tuning; the eval uses it as its
    second judge unless `eval.second_judge` names another."""
    from kfrlhf.common.data_sources import write_jsonl
    from kfrlhf.common.models import load_reward_model
    from kfrlhf.eval.stage import PROBE_JUDGE
    from kfrlhf.eval.stage import run as run_eval
    from kfrlhf.pipelines.definitions import run_config as config
    from kfrlhf.reward.stage import train_reward

    cfg = config.load_config("tiny").reward
    cfg.max_steps, cfg.warm_start_pairs = 20, 100
    rows = preference_rows(150)
    train_reward(cfg, rows[:120], rows[120:], tmp_path / "reward")
    base, probe = load_reward_model("tiny-deberta").state_dict(), load_reward_model(str(tmp_path / "reward" / "probe"))
    tuned = load_reward_model(str(tmp_path / "reward" / "model")).state_dict()
    encoder = [k for k in base if "classifier" not in k and "pooler" not in k]
    assert all(torch.equal(base[k], probe.state_dict()[k]) for k in encoder)
    assert not all(torch.equal(tuned[k], base[k]) for k in encoder)  # fine-tuning moved the encoder, not the probe's

    prompts = [{"prompt": f"Question: Why do people like {t}?\n\nAnswer: "} for t in ("tea", "maps", "bees")]
    write_jsonl(prompts, tmp_path / "prompts" / "eval.jsonl")
    ev = {"num_prompts": 3, "max_new_tokens": 4, "batch_size": 3}
    args = (str(tiny_lm_dir), str(tiny_lm_dir), str(tmp_path / "reward"), str(tmp_path / "prompts"))
    assert run_eval(ev, *args, str(tmp_path / "eval"))["second_judge"] == PROBE_JUDGE
    named = run_eval(dict(ev, second_judge=str(tmp_path / "reward" / "model")), *args, str(tmp_path / "eval2"))
    assert named["second_judge"] == str(tmp_path / "reward" / "model")


def test_warm_start_of_a_decoder_classifier_pools_the_last_token():
    """A decoder classifier's head sees every position: the probe is fitted at the position transformers pools."""
    from transformers import OPTForSequenceClassification

    from kfrlhf.common.models import load_tokenizer, reward_inputs
    from kfrlhf.reward.warm_start import warm_start_head
    from tests.word_task import tiny_config

    tok = load_tokenizer("tiny-opt")
    torch.manual_seed(0)
    model = OPTForSequenceClassification(tiny_config(tok, num_labels=1))
    rows = preference_rows(150)
    pairs = [
        reward_inputs(tok, [r["prompt"] for r in rows], [r[s] for r in rows], 64)[0] for s in ("chosen", "rejected")
    ]
    metrics = warm_start_head(model, tok, *pairs)
    assert metrics["reward_warm_start_accuracy"] >= 0.85
    chosen = tok.pad({"input_ids": pairs[0][:20]}, return_tensors="pt")
    rejected = tok.pad({"input_ids": pairs[1][:20]}, return_tensors="pt")
    with torch.no_grad():
        assert (model(**chosen).logits > model(**rejected).logits).float().mean() >= 0.8
