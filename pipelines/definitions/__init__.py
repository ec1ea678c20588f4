"""The pipeline definitions: one module per pipeline (`<name>.py` defining `build_<name>_pipeline`, each its
explicit `@dsl.pipeline` signature and a few calls; `registry.py` finds them), `blocks.py` (the head and tail
they share), `stages.py` (the stage list), `run_config.py` (RunConfig, a section per stage; presets) and
`config_docs.py` (the fields' help read out: `rlhf config --explain`, docs/configuration.md).

Imports the stages' components and configs and `kfrlhf.common`, never the tooling. The cluster and local
tooling (`kfrlhf.pipelines.cluster`, `kfrlhf.pipelines.local`) and `rlhf` (`kfrlhf.pipelines.cli`) import it."""
