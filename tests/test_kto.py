"""KTO on a tiny model: preference pairs become unpaired labelled answers; on held-out answers the desirable
ones' implicit reward rises above the undesirable ones', the KTO loss falls, the adapter merges."""

import json

import pytest

from kfrlhf.kto.stage import train_kto, unpaired
from kfrlhf.merge.stage import run as merge_adapter
from kfrlhf.pipelines.definitions import run_config as config
from tests.conftest import preference_rows
from tests.test_dpo import _answer_logp


def test_each_pair_gives_a_desirable_and_an_undesirable_answer():
    pairs = [{"prompt": "Question: hi\n\nAnswer: ", "chosen": "Hello there", "rejected": "Go away"}]
    assert unpaired(pairs) == [
        {"prompt": "Question: hi\n\nAnswer:", "completion": " Hello there", "label": True},
        {"prompt": "Question: hi\n\nAnswer:", "completion": " Go away", "label": False},
    ]


def test_kto_raises_desirable_over_undesirable_on_held_out_answers_and_merges(tiny_lm_dir, tmp_path):
    cfg = config.load_config("tiny").kto
    cfg.max_steps, cfg.eval_steps, cfg.save_steps = 30, 30, 30
    rows = preference_rows(400, seed=3)
    train, held_out = rows[:360], rows[360:]
    m = train_kto(cfg, str(tiny_lm_dir), train, held_out, tmp_path / "kto")
    # Policy == reference at the start: every implicit reward 0, each loss 1 - sigmoid(0).
    assert m["kto_eval_loss_before"] == pytest.approx(0.5, abs=1e-3)
    assert m["kto_eval_loss"] < m["kto_eval_loss_before"] - 0.1
    assert m["kto_reward_desirable"] > 0 > m["kto_reward_undesirable"]
    assert m["kto_reward_margin"] > m["kto_reward_margin_before"] + 1.0
    assert json.loads((tmp_path / "kto" / "metrics.json").read_text()) == m
    # The merged model carries it: the chosen answer gains log-probability over the rejected one.
    merged = merge_adapter(tmp_path / "kto" / "adapter", tmp_path / "merged", base=str(tiny_lm_dir))
    margin = {
        d: _answer_logp(d, held_out, "chosen") - _answer_logp(d, held_out, "rejected") for d in (tiny_lm_dir, merged)
    }
    assert (margin[merged] > margin[tiny_lm_dir]).float().mean() >= 0.9
