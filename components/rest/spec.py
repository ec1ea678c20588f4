"""The rest stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import StageSpec

# The ReST pipeline unrolls its two tasks per iteration and numbers their display names; `entry` is
# Grow's, Improve's is `kfrlhf.rest.improve:run_improve`.
SPEC = StageSpec(
    name="rest",
    entry="kfrlhf.rest.grow:run_grow",
    tasks=(
        ("rest_grow", "ReST Grow (sample, score)"),
        ("rest_improve", "ReST Improve (filter, fine-tune)"),
    ),
    config="kfrlhf.rest.config:RESTConfig",
)
