"""The eval gate: promote the tuned model only when its evaluation clears the configured thresholds (`stage.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
