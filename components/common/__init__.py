"""Shared stage code: what several stages use. `config.py` (the config base classes, YAML, `--set`),
`data_sources.py`, `models.py`, `sampling.py` (generation and token log-probs), `checkpoint.py` (with
`atomic.py`: complete-or-absent files, torch-free for the stages that only write reports),
`trainer_args.py`, `tracking.py`, `outputs.py` (output directories and run reports), `k8s_syntax.py` (Kubernetes names,
quantities and image references: the rules config fields and CLI flags declare), `extras.py` (optional
dependencies), `sample_data.py`, `packaged_models.py`, `distributed.py` (rank helpers and all-reduces inside
a stage's processes), `spec.py` (`StageSpec`, the one declaration each stage's `spec.py` makes),
`field_help.py` (each config field's help, from the classes' `HELP`), `k8s_syntax.py` (Kubernetes' and image
references' own syntax rules for cluster values), `save_clock.py` (checkpoints by time as well as by steps),
`rollout/` (the rollout engines: `hf` and `vllm`) and `component.py` (the KFP decorator the stages share).

Everything may import it: the stages, the launch room (`kfrlhf.launch`) and `kfrlhf.pipelines`. It imports
no other room: never a stage, the launch room or the pipelines."""
