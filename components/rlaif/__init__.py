"""The RLAIF stage: AI-labelled preference pairs from the SFT model's answers (`stage.py`), judged by a
causal LM against a constitution (`judge.py`, `constitution.py`, the default `constitution.yaml`).

The KFP component is in `component.py`; nothing here imports it, so the stage runs without kfp."""
