"""The dpo stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(
    name="dpo",
    order=70,
    tasks=(("dpo", "DPO"),),
    config="kfrlhf.dpo.config:DPOConfig",
    distributed=True,
)
