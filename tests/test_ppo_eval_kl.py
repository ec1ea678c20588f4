"""The eval KL is the KL of what was sampled: both models' log-probs at the eval temperature."""

import pytest
import torch

from kfrlhf.common import models, sampling
from kfrlhf.common.rollout import hf as hf_engine
from kfrlhf.eval import stage as ev
from kfrlhf.eval.config import EvalConfig

PROMPTS = [f"Question: Why do people like {t}?\n\nAnswer: " for t in ("tea", "maps", "bees", "kites")]


def k1(model, r, temperature: float) -> torch.Tensor:
    """sum_t log p(token) over each response, from the model's raw logits."""
    pos = (r.attention_mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=r.input_ids, attention_mask=r.attention_mask, position_ids=pos).logits
    logp = torch.log_softmax(logits[:, r.prompt_len - 1 : -1] / temperature, -1)
    return (logp.gather(-1, r.response_ids[..., None])[..., 0] * r.mask).sum(1)


@torch.no_grad()
def test_eval_kl_is_taken_at_the_sampling_temperature(tiny_lm_dir, tmp_path, monkeypatch):
    tuned = models.load_causal_lm(models.TINY_CAUSAL)
    for p in tuned.parameters():
        p.add_(0.05 * torch.randn_like(p))
    tuned.save_pretrained(tmp_path / "tuned")
    models.load_reward_model(models.TINY_ENCODER).save_pretrained(tmp_path / "rm")
    models.load_tokenizer(models.TINY_ENCODER).save_pretrained(tmp_path / "rm")
    rollouts = []
    generate = sampling.generate
    monkeypatch.setattr(hf_engine, "generate", lambda *a: rollouts.append(generate(*a)) or rollouts[-1])
    cfg = EvalConfig(num_prompts=4, max_new_tokens=6, batch_size=4, temperature=0.7)
    report = ev.evaluate(
        cfg, str(tiny_lm_dir), str(tmp_path / "tuned"), str(tmp_path / "rm"), PROMPTS, tmp_path / "out"
    )

    sft, tuned = (models.load_pretrained_causal_lm(str(d)) for d in (tiny_lm_dir, tmp_path / "tuned"))
    r = rollouts[1]  # the tuned model's samples
    expected = {t: (k1(tuned, r, t) - k1(sft, r, t)).mean().item() for t in (0.7, 1.0)}
    assert abs(expected[0.7] - expected[1.0]) > 0.05  # the temperature matters here
    assert report["kl"] == pytest.approx(expected[0.7], abs=1e-4)
    assert report["kl_temperature"] == 0.7 and "sampling temperature" in report["kl_estimator"]
