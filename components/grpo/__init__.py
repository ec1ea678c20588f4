"""The GRPO stage: TRL's GRPOTrainer on the SFT model, with the reward model as its reward function
(`stage.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
