"""The ReST stage: Grow (sample answers from the current policy and score them with the reward model,
`grow.py`) and Improve (keep the answers above a rising threshold and fine-tune on them, `improve.py`).

The pipeline unrolls `rest.iterations` Grow/Improve pairs at compile time. The KFP components are in
`component.py`; nothing here imports it, so the stage runs without kfp."""
