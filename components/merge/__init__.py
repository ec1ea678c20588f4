"""The merge stage: fold a LoRA adapter into its base model (`merge.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
