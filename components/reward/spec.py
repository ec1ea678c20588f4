"""The reward stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(name="reward", order=50, tasks=(("reward", "Train reward model"),), distributed=True)
