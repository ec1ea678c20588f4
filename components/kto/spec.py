"""The kto stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import StageSpec

# One sequence per example (and its mismatched KL sequence): memory as DPO's pair of sequences.
SPEC = StageSpec(name="kto", order=95, tasks=(("kto", "KTO"),), distributed=True, method="KTO", memory="pairs")
