"""The dpo stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(name="dpo", order=70, tasks=(("dpo", "DPO"),), distributed=True)
