"""kfrlhf: RLHF (SFT -> merge -> reward -> PPO -> merge -> eval, or DPO) as Kubeflow Pipelines components.

One subpackage per stage (`kfrlhf.data`, `.sft`, `.merge`, `.reward`, `.ppo`, `.dpo`, `.eval`): its
plain code, tested without KFP, and its thin KFP component (`component.py`). Shared stage code is in
`kfrlhf.common`, how a training stage is started (accelerate, TrainJob) in `kfrlhf.launch`;
`kfrlhf.pipelines` wires the components into pipelines and holds the tooling and the CLI (docs/layout.md).
"""

__version__ = "0.1.0"
