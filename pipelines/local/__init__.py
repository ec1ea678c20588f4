"""Local tooling: what runs on this machine rather than in a cluster: `run.py` (`rlhf run`, the pipelines on
kfp.local), `console.py` (its progress lines), `containers.py` (`rlhf run --runner container`: each task in its
stage's image), `compare.py` (`rlhf compare`), `generate.py` (`rlhf generate`),
`one_stage.py` (`rlhf stage`: one stage's entry on existing artifacts, started as its component starts it),
`plan.py` (`rlhf plan`, GPU memory per stage; benchmarks/gpu_step.py records its estimate too) and
`model_shapes.py` (a model's counts and dimensions from its config.json, for the plan).

Imports the pipeline definitions, the stages, `kfrlhf.common` and (`one_stage.py`) `kfrlhf.launch`, never the
cluster tooling. Only `rlhf`
(`kfrlhf.pipelines.cli`) imports it, and benchmarks/gpu_step.py imports `plan.py` and `model_shapes.py`."""
