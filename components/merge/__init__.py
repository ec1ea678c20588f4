"""The merge stage: fold a LoRA adapter into its base model (`stage.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
