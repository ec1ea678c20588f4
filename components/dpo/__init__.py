"""The DPO stage: TRL's DPOTrainer on the SFT model (`stage.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
