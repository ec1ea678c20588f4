"""The sft stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(
    name="sft",
    entry="kfrlhf.sft.train:run_sft",
    tasks=(("sft", "Supervised fine-tuning (QLoRA)"),),
    config="kfrlhf.sft.config:SFTConfig",
    distributed=True,
)
