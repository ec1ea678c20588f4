"""The data stage: load, validate and normalise the SFT, preference and prompt datasets (`stage.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
