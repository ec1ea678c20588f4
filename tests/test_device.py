"""Every tensor a stage makes lives on its model's device: the PPO step, its reductions, sampling, the eval, the
RLAIF judge and `rlhf generate`, run with their models on a GPU: a real one where CUDA is available (the GPU
check, `make gpu-check`, runs this file there), else one that the CPU stands in for (`tests.fake_gpu`)."""

import math

import pytest
import torch

from kfrlhf.common import models
from kfrlhf.common.data_sources import write_jsonl
from kfrlhf.eval.config import EvalConfig
from kfrlhf.eval.stage import evaluate
from kfrlhf.pipelines.local.generate import Generator
from kfrlhf.ppo.config import PPOConfig
from kfrlhf.ppo.normalization import RunningMoments
from kfrlhf.ppo.stage import run as run_ppo_stage
from kfrlhf.ppo.trainer import divergence, global_mean_kl, run_ppo, whiten
from kfrlhf.rest.stage import run_grow
from kfrlhf.rlaif import judge as judge_module
from tests import word_task
from tests.fake_gpu import on_fake_gpu
from tests.word_task import PROMPTS, tiny_lm, tiny_tokenizer

QUESTIONS = [f"Question: Why do people like {t}?\n\nAnswer: " for t in ("tea", "maps", "bees", "kites")]


@pytest.fixture
def gpu(monkeypatch):
    """The device the models go to: CUDA, real or stood in for (then tensors there refuse CPU partners)."""
    cuda = torch.device("cuda")
    if torch.cuda.is_available():
        yield cuda
        return
    monkeypatch.setattr(models, "device", lambda: cuda)
    monkeypatch.setattr(judge_module, "device", lambda: cuda)
    with on_fake_gpu():
        yield cuda


def on_gpu(x: torch.Tensor) -> bool:
    return x.device.type == "cuda"


def test_the_stand_in_refuses_what_cuda_refuses(gpu):
    x = torch.ones(3, device=gpu)
    assert x.device == torch.device("cuda", 0) and x.is_cuda and on_gpu(x * 2 + x.sum())
    with pytest.raises(RuntimeError, match="same device"):
        torch.stack([x.sum(), torch.tensor(3.0)])  # the GPU issue's crash: a CPU count stacked with CUDA sums
    with pytest.raises(RuntimeError, match="same device"):
        x + torch.ones(3)
    with pytest.raises(TypeError, match="numpy"):
        x.numpy()
    # What CUDA accepts: a CPU scalar in an element-wise op, CPU indices, copies both ways.
    assert on_gpu(x * torch.tensor(2.0)) and on_gpu(x[torch.tensor([0, 2])])
    assert not on_gpu(x.cpu()) and x.cpu().tolist() == [1.0, 1.0, 1.0] and on_gpu(torch.zeros(3).to(x.device))
    assert on_gpu(x.new_tensor(5)) and on_gpu(torch.zeros_like(x)) and on_gpu(x.float().long())


def test_ppo_reductions_stay_on_the_device(gpu):
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], device=gpu)
    moments = RunningMoments()
    moments.update(x)
    assert moments.count == 4 and moments.mean == pytest.approx(2.5)
    assert on_gpu(moments.normalize(x))
    assert divergence(PPOConfig(), x, 0.1) is None
    assert "NaN/inf for 1 of 4" in divergence(PPOConfig(), torch.tensor([1.0, math.nan, 0.0, 1.0], device=gpu), 0.1)
    assert global_mean_kl(x) == pytest.approx(2.5)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]], device=gpu)
    white = whiten(torch.tensor([[1.0, 2.0], [3.0, 9.0]], device=gpu), mask)
    assert on_gpu(white) and white[1, 1].item() == 0.0 and white.sum().item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("static_cache", [False, True], ids=["dynamic-cache", "static-cache"])
def test_ppo_steps_with_the_policy_on_the_gpu(gpu, static_cache):
    tok = tiny_tokenizer()
    model = tiny_lm(tok).to(gpu)
    cfg = PPOConfig(
        steps=2, batch_size=8, mini_batch_size=4, ppo_epochs=1, min_new_tokens=3, max_new_tokens=5,
        max_prompt_length=16, lora_r=4, lora_alpha=8, lora_dropout=0.0, missing_eos_penalty=1.0, seed=0,
        static_cache=static_cache,
    )  # fmt: skip

    def reward(prompts, responses):  # a scorer's answer comes back on the CPU, as RewardScorer's does
        return word_task.target_fraction(responses)

    result = run_ppo(cfg, model, tok, PROMPTS, reward)
    assert len(result["history"]) == 2 and all(math.isfinite(h["policy_loss"]) for h in result["history"])
    assert all(on_gpu(p) for p in model.parameters())


def test_eval_with_both_models_on_the_gpu(gpu, tiny_lm_dir, reward_dir, tmp_path):
    cfg = EvalConfig(num_prompts=4, max_new_tokens=4, batch_size=2, num_samples=2, second_judge=str(reward_dir[0]))
    report = evaluate(cfg, str(tiny_lm_dir), str(tiny_lm_dir), str(reward_dir[0]), QUESTIONS, tmp_path)
    assert report["kl"] == pytest.approx(0.0, abs=1e-5) and report["win_rate"] == 0.5
    assert report["win_rate_second_judge"] == 0.5


def test_the_rlaif_judge_on_the_gpu(gpu, tiny_lm_dir):
    judge = judge_module.LMJudge(str(tiny_lm_dir), ["Be kind."], batch_size=2)
    scores = judge(QUESTIONS[:3], ["Yes.", "No.", "Maybe."], ["No.", "Yes.", "Maybe."])
    assert not on_gpu(scores) and scores.shape == (3,) and torch.isfinite(scores).all()  # back on the CPU


def test_rlhf_generate_on_the_gpu(gpu, tiny_lm_dir):
    answers = Generator(tiny_lm_dir)(QUESTIONS[:2], {"max_new_tokens": 4}, seed=0)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


@pytest.fixture
def stage_inputs(tmp_path, reward_dir) -> tuple[str, str]:
    """A prompt dataset folder and the reward stage's output folder, as the pipeline hands them on."""
    write_jsonl([{"prompt": q} for q in QUESTIONS * 2], tmp_path / "prompts" / "train.jsonl")
    return str(tmp_path / "prompts"), str(reward_dir[0].parent)


def test_the_ppo_stage_on_the_gpu(gpu, tiny_lm_dir, stage_inputs, tmp_path):
    """The stage as the pipeline runs it: policy and reward model loaded onto the device, checkpoints, outputs."""
    prompts, reward = stage_inputs
    ppo = dict(steps=2, batch_size=4, mini_batch_size=2, ppo_epochs=1, min_new_tokens=3, max_new_tokens=5, save_every=1)
    metrics = run_ppo_stage(ppo, str(tiny_lm_dir), reward, prompts, str(tmp_path / "ppo"))
    assert math.isfinite(metrics["reward_last"]) and math.isfinite(metrics["kl_last"])
    assert (tmp_path / "ppo" / "adapter" / "adapter_model.safetensors").is_file()


def test_rest_grow_on_the_gpu(gpu, tiny_lm_dir, stage_inputs, tmp_path):
    prompts, reward = stage_inputs
    rest = dict(iterations=1, num_prompts=4, samples_per_prompt=2, max_new_tokens=4, generation_batch_size=4)
    summary = run_grow(rest, 0, 1, str(tiny_lm_dir), None, reward, prompts, str(tmp_path / "grow"))
    assert summary["rest_grow_samples"] == 8 and math.isfinite(summary["rest_grow_reward_mean"])
