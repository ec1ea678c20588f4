"""kfrlhf: RLHF (SFT -> merge -> reward -> PPO -> merge -> eval) as Kubeflow Pipelines components.

The stage code here is plain Python with no kfp import; `kfrlhf.kfp_components` wraps each
stage in a thin KFP component and `kfrlhf.pipelines` wires them into pipelines.
"""

__version__ = "0.1.0"
