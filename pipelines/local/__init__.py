"""Local tooling: what runs on this machine rather than in a cluster: `run.py` (`rlhf run`, the pipelines on
kfp.local), `console.py` (its progress lines), `compare.py` (`rlhf compare`) and `generate.py` (`rlhf generate`).

Imports the pipeline definitions, the stages and `kfrlhf.common`, never the cluster tooling. Only `rlhf`
(`kfrlhf.pipelines.cli`) imports it."""
