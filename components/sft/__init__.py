"""The SFT stage: supervised fine-tuning with (Q)LoRA (`train.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
