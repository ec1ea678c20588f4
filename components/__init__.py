"""kfrlhf: RLHF and its alternatives (SFT -> merge -> a tuning method -> merge -> eval) as Kubeflow Pipelines
components.

One subpackage per stage (each with a `spec.py`; `kfrlhf.pipelines.definitions.stages` lists them): its
plain code, tested without KFP, and its thin KFP component (`component.py`). Shared stage code is in
`kfrlhf.common`, how a training stage is started (accelerate, TrainJob) in `kfrlhf.launch`;
`kfrlhf.pipelines` wires the components into pipelines and holds the tooling and the CLI (docs/layout.md).
"""

__version__ = "0.1.0"
