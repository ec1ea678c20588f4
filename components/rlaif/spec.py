"""The rlaif stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(name="rlaif", order=40, tasks=(("rlaif", "Label answer pairs (AI judge)"),))
