"""The dpo stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import StageSpec

# Its memory: a LoRA policy on pairs of sequences (`rlhf plan`'s estimator `pairs`).
SPEC = StageSpec(name="dpo", order=70, tasks=(("dpo", "DPO"),), distributed=True, method="DPO", memory="pairs")
