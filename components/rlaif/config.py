"""The RLAIF stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import NON_NEGATIVE, POSITIVE, ConfigError, SamplingFields, StageConfig


@dataclass
class RLAIFConfig(StageConfig, SamplingFields):
    """RLAIF labelling: the SFT model answers each prompt twice, an AI judge says which answer better
    follows the constitution, in both orders; consistent verdicts become the reward model's pairs.

    Judge: `judge_model` (a causal LM's path or hub id, or a packaged name such as
    `smollm2-135m-instruct`; an instruct model with a chat template; `sample-lexicon`: the tiny preset's
    stand-in for the sample data, not a language model), `constitution` (a YAML list of
    principles; empty: the default shipped with the package, `kfrlhf/rlaif/constitution.yaml`),
    `judge_batch_size`. Pairs: `num_prompts` training prompts and `num_eval_prompts` held-out prompts
    (the reward model's held-out pairs), each answered twice with `max_new_tokens`, `batch_size`
    prompts per generate call, `seed`, and the sampling fields (`SamplingFields`). The stage fails
    when fewer than `min_pairs` training pairs (or no held-out pair) survive the judging, and stops
    judging as soon as `min_pairs` is out of reach (`label.kept_share_bound`).
    """

    section: ClassVar[str] = "rlaif"
    RULES: ClassVar[dict] = dict(
        num_prompts=POSITIVE,
        num_eval_prompts=POSITIVE,
        max_new_tokens=POSITIVE,
        batch_size=POSITIVE,
        judge_batch_size=POSITIVE,
        min_pairs=NON_NEGATIVE,
    )

    HELP: ClassVar[dict] = dict(
        judge_model="the AI judge: a causal LM (path, hub id, packaged name) or sample-lexicon (tiny preset)",
        constitution="a YAML list of principles; empty: the packaged default",
        num_prompts="training prompts answered twice and judged",
        num_eval_prompts="held-out prompts answered twice and judged (the reward model's eval pairs)",
        max_new_tokens="tokens per answer (not above reward.max_length)",
        batch_size="prompts per generate call",
        judge_batch_size="judgements per judge call",
        min_pairs="fewer consistent training pairs fail the stage",
        seed="the sampling seed",
    )

    judge_model: str = "HuggingFaceTB/SmolLM2-1.7B-Instruct"
    constitution: str = ""
    num_prompts: int = 2000
    num_eval_prompts: int = 200
    max_new_tokens: int = 128
    batch_size: int = 16
    judge_batch_size: int = 8
    min_pairs: int = 100
    seed: int = 42

    def check(self) -> None:
        if self.min_pairs > self.num_prompts:  # the stage would judge every pair, then fail
            raise ConfigError(
                f"rlaif.min_pairs ({self.min_pairs}) exceeds rlaif.num_prompts ({self.num_prompts}): each prompt gives "
                "at most one training pair; lower rlaif.min_pairs or raise rlaif.num_prompts"
            )
