"""The rlaif stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(
    name="rlaif",
    entry="kfrlhf.rlaif.label:run_rlaif",
    tasks=(("rlaif", "Label answer pairs (AI judge)"),),
    config="kfrlhf.rlaif.config:RLAIFConfig",
)
