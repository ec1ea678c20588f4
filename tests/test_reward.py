from kfrlhf.models import RewardScorer
from kfrlhf.reward import pair_accuracy
from tests.conftest import preference_rows


def test_reward_model_learns_the_sample_preference(reward_dir):
    path, metrics = reward_dir
    assert metrics["reward_accuracy"] >= 0.9
    # Fresh pairs from another seed, scored through the saved model.
    assert pair_accuracy(RewardScorer(str(path)), preference_rows(100, seed=99)) >= 0.9


def test_untrained_reward_model_is_near_chance(tmp_path):
    from kfrlhf.models import load_reward_model, load_tokenizer

    load_reward_model("tiny-deberta").save_pretrained(tmp_path)
    load_tokenizer("tiny-deberta").save_pretrained(tmp_path)
    assert pair_accuracy(RewardScorer(str(tmp_path)), preference_rows(100, seed=99)) < 0.9
