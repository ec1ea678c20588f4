"""Serving: promote a gated model (Kubeflow Model Registry, KServe InferenceService; `stage.py`).
`rlhf generate`, which answers prompts locally, is in `kfrlhf.pipelines.local.generate`.

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
