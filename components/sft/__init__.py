"""The SFT stage: supervised fine-tuning with (Q)LoRA (`stage.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
