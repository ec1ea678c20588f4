"""DPO on a tiny model: held-out preference accuracy and margin rise, the DPO loss falls, the adapter
merges; and the DPO pipeline end to end through kfp.local."""

import json
import math

import pytest
import torch

from kfrlhf.common.models import load_causal_lm, load_tokenizer
from kfrlhf.dpo.stage import train_dpo
from kfrlhf.merge.stage import run as merge_adapter
from kfrlhf.pipelines.cli import GATE_REFUSED, main
from kfrlhf.pipelines.definitions import run_config as config
from kfrlhf.pipelines.definitions.registry import PIPELINES
from tests.conftest import preference_rows
from tests.test_pipeline import FAST


def _answer_logp(model_dir, rows: list[dict], key: str) -> torch.Tensor:
    """Summed log-probability of each row's answer `key` after its prompt."""
    model, tok = load_causal_lm(str(model_dir)).eval(), load_tokenizer(str(model_dir))
    out = []
    with torch.no_grad():
        for r in rows:
            n = len(tok(r["prompt"].rstrip())["input_ids"])
            ids = tok(r["prompt"] + r[key], return_tensors="pt")["input_ids"]
            logp = model(ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
            out.append(logp[n - 1 :].sum())
    return torch.stack(out)


def test_dpo_prefers_chosen_on_held_out_pairs_and_merges(tiny_lm_dir, tmp_path):
    cfg = config.load_config("tiny").dpo
    cfg.max_steps, cfg.eval_steps, cfg.save_steps = 30, 30, 30
    rows = preference_rows(400, seed=3)
    train, held_out = rows[:360], rows[360:]
    m = train_dpo(cfg, str(tiny_lm_dir), train, held_out, tmp_path / "dpo")
    assert m["dpo_eval_loss_before"] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at the start
    assert m["dpo_eval_loss"] < m["dpo_eval_loss_before"] - 0.3
    assert m["dpo_reward_accuracy"] >= 0.9 > m["dpo_reward_accuracy_before"]
    assert m["dpo_reward_margin"] > m["dpo_reward_margin_before"] + 1.0
    assert json.loads((tmp_path / "dpo" / "metrics.json").read_text()) == m
    # The merged model carries what DPO learned: chosen gains log-probability over rejected.
    merged = merge_adapter(tmp_path / "dpo" / "adapter", tmp_path / "merged", base=str(tiny_lm_dir))
    margin = {
        d: _answer_logp(d, held_out, "chosen") - _answer_logp(d, held_out, "rejected") for d in (tiny_lm_dir, merged)
    }
    gain = margin[merged] - margin[tiny_lm_dir]
    assert cfg.beta * gain.mean() > 0.8 * m["dpo_reward_margin"]  # DPO's implicit reward margin, up to the EOS token
    assert (margin[merged] > margin[tiny_lm_dir]).float().mean() >= 0.9


def test_dpo_run_through_kfp_local(tmp_path, capfd):
    """...with a gate no model passes: promotion is skipped, and the run says why."""
    out = tmp_path / "run"
    args = ["run", "--pipeline", "dpo", "--output", str(out), "--report-to", "none"]
    closed_gate = ["gate.min_gain_stderrs=1e6", "gate.min_win_rate=1.0"]
    for item in FAST + ["dpo.max_steps=10", "dpo.eval_steps=10", "dpo.save_steps=5"] + closed_gate:
        args += ["--set", item]
    assert main(args) == GATE_REFUSED
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"] == "dpo"
    assert not report["gate"]["passed"] and "promotion" not in report
    assert any(
        r.startswith("reward gain ") and "not at least 1e+06 standard errors" in r for r in report["gate"]["reasons"]
    )
    assert "eval gate failed, promotion skipped: reward gain " in capfd.readouterr().out
    assert "## Eval gate" in (out / "report.md").read_text()
    assert not (out / "inference_service.yaml").exists() and not list(out.rglob("promote"))
    for key in ("sft_eval_loss", "reward_accuracy", "reward_before", "reward_after", "kl", "win_rate"):
        assert math.isfinite(report[key]), key
    root = out / "pipeline_root"
    assert len(list(root.rglob("adapter_model.safetensors"))) == 2  # SFT and DPO adapters
    (dpo_metrics,) = [p for p in root.rglob("metrics.json") if "dpo_eval_loss" in p.read_text()]
    assert json.loads(dpo_metrics.read_text())["dpo_eval_loss"] < math.log(2)
    assert not list(root.rglob("history.json"))  # no PPO task ran


def test_unknown_pipeline_is_refused(tmp_path, capsys):
    assert main(["run", "--pipeline", "ppo2", "--output", str(tmp_path / "x")]) == 2
    assert f"unknown pipeline 'ppo2' (known: {', '.join(PIPELINES)})" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_dpo_evaluates_on_the_first_max_eval_rows_pairs(tiny_lm_dir, tmp_path, monkeypatch):
    import trl

    class Built(Exception):
        pass

    seen = {}

    def built(self, *args, eval_dataset=None, **kwargs):
        seen["prompts"] = list(eval_dataset["prompt"])
        raise Built

    monkeypatch.setattr(trl.DPOTrainer, "__init__", built)
    cfg = config.load_config("tiny").dpo
    cfg.max_eval_rows = 3
    rows = preference_rows(10)
    with pytest.raises(Built):
        train_dpo(cfg, str(tiny_lm_dir), rows[:5], rows[5:], tmp_path)
    assert seen["prompts"] == [r["prompt"].rstrip() for r in rows[5:8]]
