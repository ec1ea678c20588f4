"""The PPO stage: the project's own PPO for language models (`stage.py`, `trainer.py`, pure maths in `losses.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
