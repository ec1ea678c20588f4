"""Pipeline name -> builder(configure=None) returning the @dsl.pipeline function.

`rlhf compile` compiles each one; `rlhf run --pipeline NAME` runs one through kfp.local.
Needs kfp only (not kfp-kubernetes), so the local runner can import it.
"""

from kfrlhf.pipelines.dpo import build_dpo_pipeline
from kfrlhf.pipelines.rlaif import build_rlaif_pipeline
from kfrlhf.pipelines.rlhf import build_rlhf_pipeline

PIPELINES = {"rlhf": build_rlhf_pipeline, "dpo": build_dpo_pipeline, "rlaif": build_rlaif_pipeline}
