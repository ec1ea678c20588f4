"""The KTO stage: TRL's KTOTrainer on the SFT model, from unpaired desirable/undesirable answers (`stage.py`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
