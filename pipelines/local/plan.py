"""GPU memory plan (`rlhf plan`): each GPU stage's peak memory for a run config and its models, against a GPU.

The model's shape comes from its config.json (no weights are read): the model is built on the meta
device, so the parameter count is exact for any architecture transformers knows (a tied embedding counted
once), and the linear layers give what 4-bit quantises and what LoRA (all linear layers, as the stages
set it) adds. A stage's estimate is the largest of its phases (sampling, training step), each a sum of
terms in bytes, explained by the helpers below; every stage shares them:

- `weights`: parameters x bytes (fp32 4, bf16 2; 4-bit NF4 with double quantisation ~0.52 byte for the
  blocks' linear weights, the rest in the compute dtype);
- `trainable`: trained parameters x 16 bytes: fp32 weights, gradients and AdamW's two moments;
- `activations`: what autograd keeps per token per layer for the backward pass (Llama-style block, counted
  against saved tensors on the CPU: attention's q, k, v and output, the MLP's gate, up and activation
  output; the linear layers' inputs, in fp32 for a LoRA adapter on a bf16 base since peft casts them;
  the norms' fp32 inputs), or with gradient checkpointing one layer input per layer plus one layer's whole;
  eager attention (no SDPA kernel, e.g. DeBERTa) keeps the heads x length scores too;
- `kv_cache`: sequences x length x layers x 2 (keys, values) x kv heads x head dim x bytes;
- `logits`: the output layer's vocabulary-wide scores on the positions that need them, upcast to fp32 for
  the log-softmax, and their gradients (about four fp32 copies at the start of the backward pass); PPO's
  own scoring (`scored_logits`) keeps them in the model's dtype with one gradient and an fp32 chunk;
- `CUDA_CONTEXT_GIB`: the CUDA context and allocator slack, a constant.

Checked against the H200 peaks of issue 22 (tests/test_plan.py) and recorded beside every peak
`python -m benchmarks.gpu_step` measures (`planned_gpu_gib`).

    rlhf plan --preset none --config pipelines/configs/opt-1.3b_rlhf.yaml --gpu a100-40
    rlhf plan --set sft.model_name=models/my-7b --gpu-memory 24 --json
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from kfrlhf.pipelines.definitions.stages import SPECS
from kfrlhf.pipelines.local.model_shapes import Shape, model_shape

GIB = 2**30
CUDA_CONTEXT_GIB = 0.5
NF4_BYTES = (4 + 8 / 64 + 32 / (64 * 256)) / 8  # 4-bit codes, an 8-bit absmax per 64 weights, fp32 per 256 of those
TRAINABLE_BYTES = 16  # fp32 weight, gradient, AdamW exp_avg and exp_avg_sq

# Memory as nvidia-smi reports it, GiB.
GPUS = {
    "t4": 15.0,
    "l4": 22.5,
    "a10": 22.5,
    "a100-40": 40.0,
    "l40s": 45.0,
    "a100-80": 80.0,
    "h100": 79.6,
    "h200": 140.4,
    "b200": 178.4,
}

# The terms, in bytes.


def weights(shape: Shape, nbytes: int, four_bit: bool = False) -> float:
    """The model's weights: 4-bit NF4 (double quantisation) for the blocks' linear layers when `four_bit`,
    everything else (embeddings, norms, output layer) in `nbytes` per parameter."""
    if not four_bit:
        return shape.params * nbytes
    return shape.linear * NF4_BYTES + (shape.params - shape.linear) * nbytes


def trainable(n: int) -> float:
    """`n` trained parameters in fp32 with their gradients and AdamW's two moments."""
    return n * TRAINABLE_BYTES


def activations(shape: Shape, sequences: int, length: int, nbytes: int, lora_r: int, checkpointing: bool) -> float:
    """What the forward pass keeps for the backward pass of `sequences` x `length` tokens in `nbytes` activations.

    Per token and layer (h hidden, i intermediate, r LoRA rank; counted on the CPU with saved-tensor hooks,
    within 1% for SmolLM2's shapes in fp32 and bf16): attention's q, k, v (GQA's repeated to h) and output
    and the MLP's gate, up and SiLU output, 4h + 3i at `nbytes`; the linear layers' inputs, 3h + i (the
    norms' outputs shared by q/k/v and gate/up, attention's output, the MLP's product) at `nbytes`, but
    6h + i in fp32 with a LoRA adapter on a 16-bit base (peft casts each layer's input to the adapter's
    fp32); the two norms' inputs, 2h in fp32 (the norm upcasts); LoRA's rank-r intermediates. Gradient
    checkpointing keeps each layer's input and recomputes one layer at a time. Eager attention also keeps
    its scores and probabilities (2 x heads x length per token). `lora_r` 0: no adapter (a full fine-tune)."""
    h, i = shape.hidden, shape.intermediate
    inputs_bytes = 4 if lora_r else nbytes
    inputs = (6 * h + i) if lora_r and nbytes < 4 else (3 * h + i)
    per_layer = (4 * h + 3 * i) * nbytes + inputs * inputs_bytes + 2 * h * 4
    per_layer += shape.lora_layers // max(shape.layers, 1) * lora_r * 4
    if not shape.sdpa:
        per_layer += 2 * shape.heads * length * nbytes
    tokens = sequences * length
    if checkpointing:
        return tokens * (shape.layers * h * nbytes + per_layer)
    return tokens * shape.layers * per_layer


def kv_cache(shape: Shape, sequences: int, length: int, nbytes: int) -> float:
    """Generation's key/value cache: `sequences` x `length` x layers x 2 x kv heads x head dim x `nbytes`."""
    return sequences * length * shape.layers * 2 * shape.kv_heads * shape.head_dim * nbytes


def logits(shape: Shape, sequences: int, positions: int, nbytes: int, full_length: int = 0) -> float:
    """The output layer's scores on `positions` per sequence in training: in fp32 for the log-softmax, kept with
    its output and, at the start of the backward pass, two gradients of that size (about four fp32 copies).
    `full_length`: the forward computed the whole sequence's logits (not only `logits_to_keep`), one more copy
    of `full_length` positions at `nbytes` (and its gradient)."""
    return sequences * shape.vocab * (4 * 4 * positions + nbytes * full_length)


def scored_logits(shape: Shape, sequences: int, positions: int, nbytes: int) -> float:
    """PPO's log-probs (kfrlhf.common.sampling.logprobs_from_logits): the logits in the model's dtype, kept for
    the backward pass, their gradient in that dtype, and the fp32 scratch of one chunk of rows."""
    from kfrlhf.common.sampling import CHUNK_BYTES

    scores = sequences * shape.vocab * positions
    return 2 * scores * nbytes + min(scores * 4, CHUNK_BYTES)


def sampling_logits(shape: Shape, sequences: int) -> float:
    """Generation's scores for the next token: a few fp32 copies of `sequences` x vocab."""
    return 3 * sequences * shape.vocab * 4


# Stages: one function each, returning an Estimate (the peak phase's terms).


@dataclass
class Estimate:
    stage: str
    phase: str  # the phase with the peak
    terms: dict[str, float]  # bytes, the CUDA context included
    notes: list[str] = field(default_factory=list)

    @property
    def gib(self) -> float:
        return sum(self.terms.values()) / GIB

    @property
    def allocated_gib(self) -> float:
        """Without the CUDA context: what torch.cuda.max_memory_allocated measures."""
        return self.gib - CUDA_CONTEXT_GIB


def peak(stage: str, common: dict[str, float], phases: dict[str, dict[str, float]]) -> Estimate:
    """The phase whose terms plus `common` (held throughout, the CUDA context added) are largest."""
    common = {**common, "CUDA context": CUDA_CONTEXT_GIB * GIB}
    name, terms = max(phases.items(), key=lambda kv: sum(kv[1].values()))
    return Estimate(stage, name, {**common, **terms})


def precision(cfg) -> int:
    """Bytes of the stage's weights/activations: 2 with `bf16`, else 4."""
    return 2 if getattr(cfg, "bf16", False) else 4


def world(cfg) -> int:
    """Processes the stage runs in (its `distributed` section; one per GPU counted as one when unknown)."""
    dist = getattr(cfg, "distributed", None)
    return dist.world_size(gpus=1) if dist else 1


def ppo(cfg, policy: Shape, reward: Shape, prompt_tokens: int | None = None, as_first_measured: bool = False):
    """The project's PPO (kfrlhf.ppo.trainer). Held throughout: the policy's base (it is the reference too:
    the adapter disabled), the merged copy generation samples from (`merged_generation`, not for a 4-bit
    base), the reward model as saved, LoRA + value head with gradients and AdamW. Generation: the KV cache
    of the rank's rollouts at prompt + `max_new_tokens`. The update: activations of one mini-batch (per
    rank) and its response logits (`scored_logits`). `as_first_measured`: the code of issue 22's first H200
    run instead, which computed the whole sequence's logits and log-softmaxed fp32 copies of them. Scoring
    (no gradients) and reward scoring need less than the update. `prompt_tokens`: the padded prompt length,
    default `max_prompt_length` (the longest a step can have)."""
    b, n = precision(cfg), world(cfg)
    prompt = prompt_tokens or cfg.max_prompt_length
    length, rollouts, mini = prompt + cfg.max_new_tokens, max(cfg.batch_size // n, 1), max(cfg.mini_batch_size // n, 1)
    merged = cfg.merged_generation and not cfg.load_in_4bit
    common = {
        "policy weights (also the reference)": weights(policy, b, cfg.load_in_4bit),
        "merged generation copy": weights(policy, b) if merged else 0.0,
        "reward model": weights(reward, reward.dtype_bytes),
        "LoRA + value head, grads, AdamW": trainable(policy.lora(cfg.lora_r) + policy.hidden + 1),
    }
    if as_first_measured:
        update_logits = logits(policy, mini, cfg.max_new_tokens, b, full_length=length)
    else:
        update_logits = scored_logits(policy, mini, cfg.max_new_tokens, b)
    return peak(
        "ppo",
        common,
        {
            "generation": {
                "KV cache": kv_cache(policy, rollouts, length, b),
                "sampling logits": sampling_logits(policy, rollouts),
            },
            "update": {
                "activations": activations(policy, mini, length, b, cfg.lora_r, cfg.gradient_checkpointing),
                "logits": update_logits,
            },
        },
    )


def sft(cfg, model: Shape) -> Estimate:
    """SFT through TRL's SFTTrainer: the base in fp32 (loaded so; bf16 is autocast) or 4-bit (QLoRA), a LoRA
    adapter; per step `batch_size` / processes sequences of `seq_length` (packed) tokens, the loss on every
    position (whole-sequence logits)."""
    b, n = precision(cfg), world(cfg)
    seqs = max(cfg.batch_size // n, 1)
    common = {
        "weights": weights(model, 4, cfg.load_in_4bit),
        "LoRA, grads, AdamW": trainable(model.lora(cfg.lora_r)),
    }
    step = {
        "activations": activations(model, seqs, cfg.seq_length, b, cfg.lora_r, cfg.gradient_checkpointing),
        "logits": logits(model, seqs, cfg.seq_length, b),
    }
    return peak("sft", common, {"training step": step})


def reward(cfg, model: Shape) -> Estimate:
    """The reward model through TRL's RewardTrainer: a full fine-tune (weights, gradients and AdamW in fp32,
    no LoRA) of a one-output classifier; each pair is two sequences of `max_length` tokens."""
    b, n = precision(cfg), world(cfg)
    seqs = 2 * max(cfg.batch_size // n, 1)
    common = {"weights, grads, AdamW": trainable(model.params)}
    step = {"activations": activations(model, seqs, cfg.max_length, b, 0, cfg.gradient_checkpointing)}
    return peak("reward", common, {"training step": step})


def dpo(cfg, model: Shape) -> Estimate:
    """DPO through TRL's DPOTrainer: the SFT model in fp32 with a LoRA adapter, the reference its adapter
    disabled (a no-gradient pass); chosen and rejected of each pair as two sequences of `max_length`."""
    b, n = precision(cfg), world(cfg)
    seqs = 2 * max(cfg.batch_size // n, 1)
    common = {
        "weights (also the reference)": weights(model, 4),
        "LoRA, grads, AdamW": trainable(model.lora(cfg.lora_r)),
    }
    step = {
        "activations": activations(model, seqs, cfg.max_length, b, cfg.lora_r, cfg.gradient_checkpointing),
        "logits": logits(model, seqs, cfg.max_length, b),
    }
    return peak("dpo", common, {"training step": step})


def grpo(cfg, model: Shape, reward_model: Shape) -> Estimate:
    """GRPO through TRL's GRPOTrainer: the SFT model in fp32 with a LoRA adapter (the reference: disabled), the
    reward model. Generation: `batch_size` x `gradient_accumulation_steps` / processes completions (groups of
    `num_generations`) at once; training: `batch_size` / processes sequences, logits on the completion only."""
    b, n = precision(cfg), world(cfg)
    length = cfg.max_prompt_length + cfg.max_new_tokens
    seqs = max(cfg.batch_size // n, 1)
    gen = max(cfg.batch_size * cfg.gradient_accumulation_steps // n, 1)
    common = {
        "weights (also the reference)": weights(model, 4),
        "reward model": weights(reward_model, reward_model.dtype_bytes),
        "LoRA, grads, AdamW": trainable(model.lora(cfg.lora_r)),
    }
    return peak(
        "grpo",
        common,
        {
            "generation": {"KV cache": kv_cache(model, gen, length, 4), "sampling logits": sampling_logits(model, gen)},
            "training step": {
                "activations": activations(model, seqs, length, b, cfg.lora_r, cfg.gradient_checkpointing),
                "logits": logits(model, seqs, cfg.max_new_tokens, b),
            },
        },
    )


def rest(cfg, model: Shape, reward_model: Shape) -> Estimate:
    """ReST: Grow samples `generation_batch_size` answers at a time and scores them (inference); Improve is
    LoRA SFT (fp32 weights) on prompt + answer sequences. The larger of the two tasks."""
    b = precision(cfg)
    length = cfg.max_prompt_length + cfg.max_new_tokens
    grow = {
        "weights": weights(model, model.dtype_bytes),
        "reward model": weights(reward_model, reward_model.dtype_bytes),
        "KV cache": kv_cache(model, cfg.generation_batch_size, length, model.dtype_bytes),
        "sampling logits": sampling_logits(model, cfg.generation_batch_size),
    }
    improve = {
        "weights": weights(model, 4),
        "LoRA, grads, AdamW": trainable(model.lora(cfg.lora_r)),
        "activations": activations(model, cfg.batch_size, length, b, cfg.lora_r, cfg.gradient_checkpointing),
        "logits": logits(model, cfg.batch_size, length, b),
    }
    return peak("rest", {}, {"grow": grow, "improve": improve})


def inference(stage: str, models: dict[str, tuple[Shape, int]], policy: Shape, batch: int, length: int, new: int):
    """An inference stage: `models` (term name: shape, bytes per weight) held, `batch` answers sampled at a time
    (KV cache of `length` tokens), then their `new` tokens scored (fp32 log-probs, no gradients)."""
    common = {name: weights(shape, nbytes) for name, (shape, nbytes) in models.items()}
    b = policy.dtype_bytes
    phase = {
        "KV cache": kv_cache(policy, batch, length, b),
        "logits": max(sampling_logits(policy, batch), 2 * batch * new * policy.vocab * 4),
    }
    return peak(stage, common, {"sampling and scoring": phase})


def evaluate(cfg, model: Shape, reward_model: Shape, second: Shape | None = None) -> Estimate:
    """Eval: the SFT and the tuned model (as saved) and the reward model (and `second_judge`), `batch_size`
    prompts answered at a time."""
    models = {"SFT model": (model, model.dtype_bytes), "tuned model": (model, model.dtype_bytes)}
    models["reward model"] = (reward_model, reward_model.dtype_bytes)
    if second is not None:
        models["second judge"] = (second, second.dtype_bytes)
    length = cfg.max_prompt_length + cfg.max_new_tokens
    return inference("eval", models, model, cfg.batch_size, length, cfg.max_new_tokens)


def rlaif(cfg, model: Shape, judge: Shape | None) -> Estimate:
    """RLAIF labelling: the SFT model answers (`batch_size` prompts at a time); the judge (loaded in fp32)
    reads prompt + both answers (`judge_batch_size` at a time). None: the lexicon judge, no model."""
    models = {"SFT model": (model, model.dtype_bytes)}
    if judge is not None:
        models["judge"] = (judge, 4)
    length = cfg.max_prompt_length + cfg.max_new_tokens
    est = inference("rlaif", models, model, cfg.batch_size, length, cfg.max_new_tokens)
    if judge is not None:
        judge_kv = kv_cache(judge, cfg.judge_batch_size, cfg.max_prompt_length + 2 * cfg.max_new_tokens + 256, 4)
        est.terms["KV cache"] = max(est.terms["KV cache"], judge_kv)
    return est


@dataclass
class Models:
    policy: Shape  # the SFT model's (and the merged models') architecture
    reward: Shape
    judge: Shape | None = None  # RLAIF's judge; None: no language model
    second_judge: Shape | None = None


ROLES = {"policy": "sft.model_name", "reward": "reward.model_name", "judge": "rlaif.judge_model"}


def models_for(config, policy: str | None = None, reward: str | None = None, judge: str | None = None) -> Models:
    """The shapes of the models `config` names (the SFT model's for every stage after SFT), or of the `policy`,
    `reward` and `judge` given instead (`rlhf plan --policy` ...)."""
    from kfrlhf.rlaif.judge import SAMPLE_LEXICON

    def shape(given, role, classifier=False):
        section, key = ROLES[role].split(".")
        name = given or getattr(getattr(config, section), key)
        return model_shape(name, f"--{role}" if given else ROLES[role], classifier)

    lexicon = (judge or config.rlaif.judge_model) == SAMPLE_LEXICON
    second = config.eval.second_judge
    return Models(
        policy=shape(policy, "policy"),
        reward=shape(reward, "reward", classifier=True),
        judge=None if lexicon else shape(judge, "judge"),
        second_judge=model_shape(second, "eval.second_judge", classifier=True) if second else None,
    )


# Estimator name (a stage's `StageSpec.estimator`) -> its estimate for a config section and the run's models.
ESTIMATORS = {
    "sft": lambda cfg, m: sft(cfg, m.policy),
    "reward": lambda cfg, m: reward(cfg, m.reward),
    "ppo": lambda cfg, m: ppo(cfg, m.policy, m.reward),
    "pairs": lambda cfg, m: dpo(cfg, m.policy),  # DPO, KTO: a LoRA policy on pairs of sequences
    "grpo": lambda cfg, m: grpo(cfg, m.policy, m.reward),
    "rest": lambda cfg, m: rest(cfg, m.policy, m.reward),
    "eval": lambda cfg, m: evaluate(cfg, m.policy, m.reward, m.second_judge),
    "rlaif": lambda cfg, m: rlaif(cfg, m.policy, m.judge),
}
# The plan's stages: every stage whose pod asks for a GPU, in pipeline order.
STAGES = tuple(name for name, spec in SPECS.items() if spec.gpu)


def stage_estimate(stage: str, cfg, models: Models) -> Estimate:
    """`stage`'s estimate for its config section `cfg`, by the estimator its spec names."""
    kind = SPECS[stage].estimator if stage in SPECS else stage
    if kind not in ESTIMATORS:
        raise ValueError(
            f"no GPU memory estimate for stage {stage!r} (estimator {kind!r}; known: {', '.join(ESTIMATORS)})"
        )
    return dataclasses.replace(ESTIMATORS[kind](cfg, models), stage=stage)


def candidates(stage: str, cfg):
    """The changes to try, in order, each a dict of fields: bf16, gradient checkpointing, halved (micro-)batches
    (a Trainer stage doubles its gradient accumulation, so the effective batch stays), 4-bit, then more GPUs
    (the `distributed` section: each process takes its share of the batch)."""
    fields, kind = {f.name for f in dataclasses.fields(cfg)}, SPECS[stage].estimator
    if "bf16" in fields and not cfg.bf16:
        yield {"bf16": True}
    if "gradient_checkpointing" in fields and not cfg.gradient_checkpointing:
        yield {"gradient_checkpointing": True}
    if kind == "ppo":
        mini = cfg.mini_batch_size
        while mini % 2 == 0:
            mini //= 2
            yield {"mini_batch_size": mini}
    elif "gradient_accumulation_steps" in fields and kind != "grpo":  # GRPO's batch holds whole groups
        batch, accumulation = cfg.batch_size, cfg.gradient_accumulation_steps
        while batch % 2 == 0:
            batch, accumulation = batch // 2, accumulation * 2
            yield {"batch_size": batch, "gradient_accumulation_steps": accumulation}
    elif "batch_size" in fields and kind != "grpo":
        batch = cfg.batch_size
        while batch % 2 == 0:
            batch //= 2
            yield {"batch_size": batch}
    if "load_in_4bit" in fields and not cfg.load_in_4bit:
        yield {"load_in_4bit": True}
    if "distributed" in fields:
        for processes in (2, 4, 8):
            if processes > cfg.distributed.processes(gpus=1):
                yield {"distributed": dataclasses.replace(cfg.distributed, processes_per_node=processes)}


def advice(stage: str, cfg, models: Models, gpu_gib: float) -> tuple[list[str], float]:
    """The `--set` overrides that bring `stage` within `gpu_gib`: `candidates` taken in order, each kept when it
    lowers the estimate, until it fits. Returns them (all that helped, when nothing is enough) and the estimate
    they reach."""
    changes: dict[str, object] = {}
    best = stage_estimate(stage, cfg, models).gib
    for change in candidates(stage, cfg):
        try:
            trial = dataclasses.replace(cfg, **change)  # checked on construction
        except ValueError:
            continue
        gib = stage_estimate(stage, trial, models).gib
        if gib < best:
            cfg, best = trial, gib
            changes.update(change)
            if best <= gpu_gib:
                break
    sets = []
    for key, value in changes.items():
        if key == "distributed":
            key, value = "distributed.processes_per_node", value.processes_per_node
        sets.append(f"{stage}.{key}={str(value).lower()}")
    return sets, best


def plan(config, models: Models, gpu_gib: float, stages=STAGES) -> list[dict]:
    """One row per stage: its estimate, whether it fits `gpu_gib`, and the advice when not."""
    rows = []
    for stage in stages:
        cfg = getattr(config, stage)
        est = stage_estimate(stage, cfg, models)
        row = {
            "stage": stage,
            "gib": round(est.gib, 2),
            "fits": est.gib <= gpu_gib,
            "phase": est.phase,
            "terms_gib": {k: round(v / GIB, 3) for k, v in est.terms.items() if v},
            "advice": [],
            "advice_gib": None,
        }
        if not row["fits"]:
            sets, gib = advice(stage, cfg, models, gpu_gib)
            row["advice"], row["advice_gib"] = sets, round(gib, 2)
            row["advice_fits"] = gib <= gpu_gib
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = [("stage", "estimate GiB", "fits?", "advice")]
    for r in rows:
        if r["fits"]:
            tip = ""
        elif r["advice_fits"]:
            tip = " ".join(f"--set {s}" for s in r["advice"]) + f"  (-> {r['advice_gib']:.1f} GiB)"
        else:
            tried = " ".join(r["advice"]) or "any change"
            tip = f"does not fit even with {tried} ({r['advice_gib']:.1f} GiB): a larger GPU"
        lines.append((r["stage"], f"{r['gib']:.2f}", "yes" if r["fits"] else "no", tip))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join(
        ("  ".join(c.ljust(w) for c, w in zip(line[:3], widths)) + "  " + line[3]).rstrip() for line in lines
    )


def gpu_memory(gpu: str | None, gib: float | None) -> tuple[float, str]:
    """The GPU's memory in GiB and its label: `--gpu NAME` or `--gpu-memory GIB` (default 80)."""
    if gpu is not None:
        key = gpu.lower()
        if key not in GPUS:
            raise ValueError(f"--gpu {gpu!r}: known GPUs are {', '.join(GPUS)} (or give --gpu-memory GIB)")
        return GPUS[key], key
    gib = 80.0 if gib is None else gib
    if not (math.isfinite(gib) and gib > 0):
        raise ValueError(f"--gpu-memory must be a positive number of GiB, got {gib}")
    return gib, "--gpu-memory"
