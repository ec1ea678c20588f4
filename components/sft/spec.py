"""The sft stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(
    name="sft", order=20, tasks=(("sft", "Supervised fine-tuning (QLoRA)"),), distributed=True, method="SFT"
)
