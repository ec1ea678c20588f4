"""Serving: promote a gated model (Kubeflow Model Registry, KServe InferenceService; `promote.py`) and
answer prompts with a merged model or a run's models (`generate.py`, what `rlhf generate` calls).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
