"""The eval stage: tuned vs SFT model, scored by the reward model, and the report (`stage.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
