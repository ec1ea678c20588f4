"""The dpo stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(
    name="dpo",
    entry="kfrlhf.dpo.train:run_dpo",
    tasks=(("dpo", "DPO"),),
    config="kfrlhf.dpo.config:DPOConfig",
    distributed=True,
)
