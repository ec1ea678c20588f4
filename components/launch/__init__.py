"""The launch room: how a training stage is started on one process, on the GPUs of a pod (`accelerate launch`,
accelerate_configs/) or on several nodes (a Kubeflow Trainer TrainJob): the `distributed` config section
(`config.py`), `launcher.py` (`run_stage`, the worker and node entry points), `trainjob.py` (the manifest)
and `trainjob_run.py` (create, stream, wait, clean up).

Imports `kfrlhf.common` only. The training stages (their configs and components) and the cluster tooling
(`kfrlhf.pipelines.cluster`) import it; `kfrlhf.common` never does."""
