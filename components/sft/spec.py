"""The sft stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(
    name="sft",
    order=20,
    tasks=(("sft", "Supervised fine-tuning (QLoRA)"),),
    config="kfrlhf.sft.config:SFTConfig",
    distributed=True,
)
