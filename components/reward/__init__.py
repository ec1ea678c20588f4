"""The reward stage: a one-output sequence classifier trained on chosen/rejected pairs (`stage.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
