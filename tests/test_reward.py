import pytest
import torch

from kfrlhf.common.models import RewardScorer
from kfrlhf.reward.train import reward_quality
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
    from kfrlhf.pipelines import run_config as config
    from kfrlhf.reward.train import RewardGateError, train_reward

    cfg = config.load_config("tiny").reward
    cfg.max_steps, cfg.eval_steps, cfg.learning_rate, cfg.min_accuracy = 1, 1, 1e-9, 0.99
    rows = preference_rows(120)
    with pytest.raises(RewardGateError, match=r"pair accuracy 0\.\d+ < reward.min_accuracy 0.99 on 20 held-out pairs"):
        train_reward(cfg, rows[:100], rows[100:], tmp_path)
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "model" / "model.safetensors").exists()


def test_metrics_carry_the_length_bias_probe(reward_dir):
    assert -1.0 <= reward_dir[1]["reward_length_correlation"] <= 1.0


def test_length_baselines_and_standard_errors():
    from kfrlhf.reward.train import length_baselines

    rows = [{"chosen": "a" * c, "rejected": "a" * r} for c, r in [(1, 2), (1, 3), (2, 1), (2, 2)]]
    # The model is right on pairs 1, 2 and 3; "shorter wins" is right on 1 and 2, and half right on the tie.
    m = length_baselines(rows, torch.tensor([1.0, 1.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert m["reward_longer_wins"] == 0.375 and m["reward_shorter_wins"] == 0.625
    assert m["reward_margin_over_length"] == pytest.approx(0.75 - 0.625)
    assert m["reward_accuracy_stderr"] == pytest.approx(0.5 / 2)  # std of (1, 1, 1, 0) / sqrt(4)
    assert m["reward_margin_over_length_stderr"] == pytest.approx(torch.tensor([0.0, 0.0, 1.0, -0.5]).std().item() / 2)


def test_warm_start_fits_the_head_on_frozen_features():
    from kfrlhf.common.models import load_reward_model, load_tokenizer
    from kfrlhf.reward.warm_start import warm_start_head

    model, tok = load_reward_model("tiny-deberta"), load_tokenizer("tiny-deberta")
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "classifier" not in k}
    rows = preference_rows(200)
    metrics = warm_start_head(model, tok, rows[:150], max_length=64)
    assert metrics["reward_warm_start_pairs"] == 150 and metrics["reward_warm_start_accuracy"] >= 0.9
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())  # only the head moved
