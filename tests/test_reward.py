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
    import pytest

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
