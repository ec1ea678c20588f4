"""Pipeline name -> builder(configure=None, config=None) returning the @dsl.pipeline function.

`config` (a RunConfig) gives the parameters' defaults and what is fixed when the pipeline is built
(ReST's iteration count); `rlhf compile` compiles each one; `rlhf run --pipeline NAME` runs one through kfp.local.
Needs kfp only (not kfp-kubernetes), so the local runner can import it.
"""

from kfrlhf.pipelines.definitions.dpo import build_dpo_pipeline
from kfrlhf.pipelines.definitions.grpo import build_grpo_pipeline
from kfrlhf.pipelines.definitions.rest import build_rest_pipeline
from kfrlhf.pipelines.definitions.rlaif import build_rlaif_pipeline
from kfrlhf.pipelines.definitions.rlhf import build_rlhf_pipeline

PIPELINES = {
    "rlhf": build_rlhf_pipeline,
    "dpo": build_dpo_pipeline,
    "rest": build_rest_pipeline,
    "rlaif": build_rlaif_pipeline,
    "grpo": build_grpo_pipeline,
}
