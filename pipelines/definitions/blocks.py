"""The building blocks the pipelines share: the head (data prep, SFT, merge, reward model) and the tail
(merge the tuned adapter onto the SFT model, eval, gate [-> promote]).

Every pipeline is head -> its own tuning -> tail: rlhf.py (PPO), dpo.py, grpo.py, rest.py
(Grow/Improve) and rlaif.py (AI-judged pairs before the reward model). A block takes `stage` (from
`stage_hook`: a task, configured for the cluster when the pipeline is built with `configure`) and the
stage parameters it needs; the head is a `Head`, which hands its artifacts to the tuning and the tail by
the input names the components use. Task creation order is the compiled pipelines' task order: keep it.
"""

from kfp import dsl

from kfrlhf.data.component import prepare_data
from kfrlhf.eval.component import evaluate
from kfrlhf.gate.component import gate as gate_component
from kfrlhf.merge.component import merge, merge_onto
from kfrlhf.reward.component import reward as reward_component
from kfrlhf.serve.component import promote
from kfrlhf.sft.component import sft as sft_component

# Component input name -> "head task.its output": what the head hands on.
HEAD_OUTPUTS = {
    "sft_model": "merge_sft.model",
    "reward_model": "reward.reward_model",
    "prompt_data": "data.prompt_data",
    "preference_data": "data.preference_data",
    "sft_metrics": "sft.metrics",
    "reward_metrics": "reward.metrics",
}


def stage_hook(configure):
    """`stage(task, name)`: the task, configured for the cluster when `configure` is given."""

    def stage(task, name):
        if configure:
            configure(task, name)
        return task

    # The cluster's GPU node pool for the promoted model's InferenceService; none locally.
    stage.node_pool = getattr(configure, "node_pool", {})
    return stage


class Head:
    """The head's tasks, by task name (`data`, `sft`, `merge_sft`, `reward`)."""

    def __init__(self, tasks: dict):
        self.tasks = tasks

    def __getitem__(self, name: str):
        """One of the head's artifacts, by its input name: `head["sft_model"]`."""
        task, output = HEAD_OUTPUTS[name].split(".")
        return self.tasks[task].outputs[output]

    def inputs(self, *names: str) -> dict:
        """The head's artifacts as keyword arguments of a component: `head.inputs("sft_model", "prompt_data")`."""
        return {name: self[name] for name in names}


def sft_head(stage, data: dict, sft: dict, report_to: str) -> Head:
    """data -> SFT -> merge; the reward model comes next (`add_reward`)."""
    prep = stage(prepare_data(data=data), "data")
    sft_task = stage(sft_component(sft=sft, report_to=report_to, sft_data=prep.outputs["sft_data"]), "sft")
    sft_model = stage(merge(adapter=sft_task.outputs["adapter"]), "merge_sft")
    return Head({"data": prep, "sft": sft_task, "merge_sft": sft_model})


def add_reward(stage, head: Head, reward: dict, report_to: str, preference_data=None) -> Head:
    """The reward model, trained on `preference_data` (default: the data stage's pairs; RLAIF's labels)."""
    pairs = head["preference_data"] if preference_data is None else preference_data
    task = reward_component(reward=reward, report_to=report_to, preference_data=pairs)
    head.tasks["reward"] = stage(task, "reward")
    return head


def sft_and_reward(stage, data: dict, sft: dict, reward: dict, report_to: str) -> Head:
    """The head: data -> SFT -> merge, and the reward model on the data's preference pairs."""
    return add_reward(stage, sft_head(stage, data, sft, report_to), reward, report_to)


def evaluate_and_promote(
    stage, head: Head, adapter, merge_name: str, eval: dict, gate: dict, serve: dict, extra_metrics=None
):
    """The tail: merge `adapter` onto the SFT model (task `merge_name`); compare tuned and SFT, scored by
    the reward model; the eval gate, then promotion (Model Registry, KServe) only when it passed.
    `extra_metrics`: another stage's metrics for the report (RLAIF's judging). Returns the gated report."""
    tuned = stage(merge_onto(adapter=adapter, base_model=head["sft_model"]), merge_name)
    report = evaluate(
        eval=eval,
        tuned_model=tuned.outputs["model"],
        **head.inputs("sft_model", "reward_model", "prompt_data", "sft_metrics", "reward_metrics"),
        **({"extra_metrics": extra_metrics} if extra_metrics is not None else {}),
    )
    eval_task = stage(report, "eval")
    gate_task = stage(gate_component(gate=gate, eval_report=eval_task.outputs["report"]), "gate")
    with dsl.If(gate_task.outputs["Output"] == "passed", name="eval-gate-passed"):
        report, run_id = gate_task.outputs["report"], dsl.PIPELINE_JOB_ID_PLACEHOLDER
        task = stage(promote(serve=serve, report=report, node_pool=stage.node_pool, run_id=run_id), "promote")
        task.set_caching_options(False)  # registering and deploying are side effects: every run does them
    return gate_task.outputs["report"]


def single_tuner(stage, params: dict, component, name: str, inputs: tuple[str, ...]):
    """The whole body of a pipeline whose policy is tuned by one task: the head, then `component` as
    task `name` on the head's `inputs` (its parameters: the pipeline's `name` section and `report_to`),
    then the tail on its adapter (merged as `merge_<name>`). `params`: the pipeline's parameters by
    name (`locals()` at the top of its body). Returns the gated report."""
    head = sft_and_reward(stage, params["data"], params["sft"], params["reward"], params["report_to"])
    policy = component(**{name: params[name]}, report_to=params["report_to"], **head.inputs(*inputs))
    adapter = stage(policy, name).outputs["adapter"]
    return evaluate_and_promote(stage, head, adapter, f"merge_{name}", params["eval"], params["gate"], params["serve"])
