"""The TRL 1.12 side of benchmarks/ppo_vs_trl.py: run `trl.experimental.ppo.PPOTrainer` and print JSON.

Runs in its own virtualenv (trl==1.12.0, peft), so it must not import kfrlhf.
Usage: python bench_trl.py '{"policy": DIR, "reward": DIR, "prompts": [...], "steps": N, ...}'
Prints one JSON line: {"samples_per_second": float, "rewards": [mean score per step]}.
"""

import json
import sys
import time

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from trl.experimental.ppo import PPOConfig, PPOTrainer


class Scores(TrainerCallback):
    def __init__(self):
        self.rewards = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "objective/scores" in logs:
            self.rewards.append(logs["objective/scores"])


def main(a: dict) -> dict:
    torch.manual_seed(a["seed"])
    tok = AutoTokenizer.from_pretrained(a["policy"], padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(a["policy"])
    reward = AutoModelForSequenceClassification.from_pretrained(a["reward"], num_labels=1)
    value = AutoModelForSequenceClassification.from_pretrained(a["reward"], num_labels=1)  # TRL's usual critic init
    ids = [tok(p)["input_ids"] for p in a["prompts"]]
    train = Dataset.from_dict({"input_ids": ids})
    b, mb = a["batch_size"], a["mini_batch_size"]
    cfg = PPOConfig(
        output_dir=a["output_dir"],
        seed=a["seed"],
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        num_sample_generations=0,
        # As in kfrlhf: no activation checkpointing; one optimiser step per mini-batch (B/M mini-batches).
        gradient_checkpointing=False,
        per_device_train_batch_size=b,
        gradient_accumulation_steps=1,
        num_mini_batches=b // mb,
        local_rollout_forward_batch_size=b,
        total_episodes=a["steps"] * b,
        num_ppo_epochs=a["ppo_epochs"],
        learning_rate=a["learning_rate"],
        lr_scheduler_type="constant",
        adam_epsilon=1e-5,
        kl_coef=a["kl_coef"],
        response_length=a["response_length"],
        stop_token="eos",
        temperature=1.0,
    )
    lora = LoraConfig(
        r=a["lora_r"], lora_alpha=2 * a["lora_r"], lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    scores = Scores()
    trainer = PPOTrainer(
        args=cfg,
        processing_class=tok,
        model=policy,
        ref_model=None,
        reward_model=reward,
        train_dataset=train,
        value_model=value,
        eval_dataset=train,
        callbacks=[scores],
        peft_config=lora,
    )
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    return {"samples_per_second": a["steps"] * b / elapsed, "rewards": scores.rewards}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
