"""Local tooling: what runs on this machine rather than in a cluster: `rlhf generate` (`generate.py`).

May import the pipeline definitions, the stages and `kfrlhf.common`; only the `rlhf` command
(`kfrlhf.pipelines.cli`) imports it."""
