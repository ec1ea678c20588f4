"""The rest stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import StageSpec

# The ReST pipeline unrolls its two tasks per iteration and numbers their display names; each step has its
# own entry function (`kfrlhf.rest.stage:run_grow`, `run_improve`).
SPEC = StageSpec(
    name="rest",
    order=80,
    tasks=(("rest_grow", "ReST Grow (sample, score)"), ("rest_improve", "ReST Improve (filter, fine-tune)")),
    steps=("grow", "improve"),
    method="ReST",
)
