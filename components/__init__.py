"""kfrlhf: RLHF (SFT -> merge -> reward -> PPO -> merge -> eval, or DPO) as Kubeflow Pipelines components.

One subpackage per stage (`kfrlhf.data`, `.sft`, `.merge`, `.reward`, `.ppo`, `.dpo`, `.eval`): its
plain code, tested without KFP, and its thin KFP component (`component.py`). Shared code is in
`kfrlhf.common`; `kfrlhf.pipelines` wires the components into pipelines and holds the CLI.
"""

__version__ = "0.1.0"
