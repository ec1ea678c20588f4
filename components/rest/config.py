"""The ReST stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import (
    NON_NEGATIVE,
    POSITIVE,
    ConfigError,
    LoraFields,
    SamplingFields,
    TrainerFields,
    from_dict,
)

MAX_ITERATIONS = 50  # the pipeline is unrolled: more would build (and run) thousands of tasks


@dataclass
class RESTConfig(TrainerFields, LoraFields, SamplingFields):
    """ReST (Reinforced Self-Training, Gulcehre et al. 2023): `iterations` rounds of Grow and Improve
    on a LoRA adapter over the SFT model.

    Grow: the first `num_prompts` training prompts (0: all), `samples_per_prompt` answers each of at
    most `max_new_tokens` tokens, sampled `generation_batch_size` at a time (the sampling fields,
    `SamplingFields`), each scored by the reward model. Improve: the rewards are standardised over the
    Grow step's answers, and the answers more than `threshold` standard deviations above the mean are
    kept, with `threshold = threshold_start + iteration * threshold_step` (iteration 0, 1, ...), a
    threshold that rises each step (the best answer always has z >= 0, so a threshold below 0 always keeps
    some; above 0, a round whose answers are mostly good already can keep none, and Improve fails saying
    so); then filtered SFT on them (answer tokens only), `max_steps` per
    Improve step, continuing the previous step's adapter. Improve has no held-out set (`eval_steps` is
    not used): the eval stage judges the result.

    `iterations` is fixed when the pipeline is built (`rlhf compile --set rest.iterations=N`): KFP cannot
    loop over a run-time count, so each round is its own pair of tasks.
    """

    section: ClassVar[str] = "rest"
    RULES: ClassVar[dict] = dict(
        iterations=(
            lambda v: 0 < v <= MAX_ITERATIONS,
            f"from 1 to {MAX_ITERATIONS} (each is a Grow and an Improve task)",
        ),
        samples_per_prompt=POSITIVE,
        num_prompts=NON_NEGATIVE,
        max_new_tokens=POSITIVE,
        generation_batch_size=POSITIVE,
        threshold_step=POSITIVE,
    )

    HELP: ClassVar[dict] = dict(
        iterations="Grow/Improve rounds, fixed when the pipeline is built",
        samples_per_prompt="answers sampled per prompt in each Grow step",
        num_prompts="training prompts per Grow step (0: all)",
        max_new_tokens="tokens per answer (not above reward.max_length)",
        generation_batch_size="answers sampled at a time",
        threshold_start="round 0's threshold, in standard deviations above the mean reward",
        threshold_step="how much the threshold rises each round",
    )

    iterations: int = 3
    samples_per_prompt: int = 4
    num_prompts: int = 0
    max_new_tokens: int = 128
    generation_batch_size: int = 32
    threshold_start: float = 0.0  # in standard deviations of the Grow step's rewards
    threshold_step: float = 0.5
    learning_rate: float = 1e-5
    max_steps: int = 200

    def threshold(self, iteration: int) -> float:
        """The Improve step's threshold, rising by `threshold_step` each iteration."""
        if not 0 <= iteration < self.iterations:
            raise ConfigError(f"rest: iteration {iteration} is outside 0..{self.iterations - 1}")
        return self.threshold_start + iteration * self.threshold_step


def unrolled_config(values: dict, iterations: int) -> RESTConfig:
    """The config from pipeline-parameter values, refused when its iteration count is not the
    `iterations` the pipeline was unrolled with."""
    cfg = from_dict(RESTConfig, values, "rest")
    if cfg.iterations != iterations:
        raise ConfigError(
            f"rest.iterations is {cfg.iterations}, but this pipeline was built with {iterations}: the count is "
            f"fixed when the pipeline is built (rlhf compile --set rest.iterations={cfg.iterations})"
        )
    return cfg
