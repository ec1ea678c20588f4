"""The pipeline definitions: one module per pipeline (rlhf, dpo, rest, rlaif, grpo; each its explicit
`@dsl.pipeline` signature and a few calls), `blocks.py` (the head and tail they share), `registry.py` (their
names), `stages.py` (the stage list) and `run_config.py` (RunConfig, a section per stage; presets).

Imports the stages' components and configs and `kfrlhf.common`, never the tooling. The cluster and local
tooling (`kfrlhf.pipelines.cluster`, `kfrlhf.pipelines.local`) and `rlhf` (`kfrlhf.pipelines.cli`) import it."""
