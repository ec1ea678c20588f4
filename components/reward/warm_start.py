"""Warm start for the reward head: fit it on the frozen encoder's features before fine-tuning.

A fresh head on a pretrained encoder spends the first fine-tuning steps finding which direction of
the features means "preferred", and its random gradients disturb the encoder meanwhile. Here the
encoder runs once, without gradients, over `warm_start_pairs` training pairs (the same input ids
fine-tuning and the scorer use, `kfrlhf.common.models.reward_inputs`); the head (the last
linear layer with one output) is fitted to its inputs by L2-regularised logistic regression on
chosen - rejected features (L-BFGS): the Bradley-Terry loss that fine-tuning then goes on minimising.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def _features(model, head, tokenizer, ids: list[list[int]], batch_size: int) -> torch.Tensor:
    """The head's input for each row of input ids; for a decoder classifier, which scores every position,
    at the last position that is not padding (the one transformers pools)."""
    found: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, args, out: found.append(args[0].detach().float().cpu()))
    rows = []
    try:
        for i in range(0, len(ids), batch_size):
            enc = tokenizer.pad({"input_ids": ids[i : i + batch_size]}, return_tensors="pt")
            model(**enc.to(model.device))
            feats = found.pop()
            if feats.dim() == 3:
                non_pad = (enc["input_ids"] != model.config.pad_token_id).cpu()
                last = (torch.arange(non_pad.shape[1]) * non_pad).argmax(-1)
                feats = feats[torch.arange(len(feats)), last]
            rows.append(feats)
    finally:
        hook.remove()
    return torch.cat(rows)


def warm_start_head(
    model,
    tokenizer,
    chosen_ids: list[list[int]],
    rejected_ids: list[list[int]],
    batch_size: int = 32,
    weight_decay: float = 1e-2,
) -> dict:
    """Set the head of sequence classifier `model` from frozen features of the pairs; its training pair accuracy."""
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1][-1]
    was_training = model.training
    model.eval()
    chosen = _features(model, head, tokenizer, chosen_ids, batch_size)
    rejected = _features(model, head, tokenizer, rejected_ids, batch_size)
    model.train(was_training)
    diff = chosen - rejected
    w = torch.zeros(diff.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        value = torch.nn.functional.softplus(-(diff @ w)).mean() + weight_decay * w.square().sum()
        value.backward()
        return value

    opt.step(loss)
    with torch.no_grad():
        head.weight.copy_(w.detach().to(head.weight)[None])
        if head.bias is not None:  # decoder classifiers have none
            head.bias.zero_()
    return {
        "reward_warm_start_pairs": len(chosen_ids),
        "reward_warm_start_accuracy": ((diff @ w) > 0).float().mean().item(),
    }
