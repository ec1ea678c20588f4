import torch

from kfrlhf.pipelines.definitions import run_config as config
from kfrlhf.sft.stage import sft_trainer, train_sft
from tests.conftest import sft_rows


def _cfg(**kw):
    cfg = config.load_config("tiny").sft
    cfg.max_steps, cfg.eval_steps, cfg.logging_steps = 40, 40, 5
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_sft_loss_falls_and_adapter_is_saved(tmp_path):
    rows = sft_rows(400)
    m = train_sft(_cfg(), rows[:360], rows[360:], tmp_path)
    assert m["sft_eval_loss"] < m["sft_eval_loss_before"] - 1.0
    assert m["sft_train_loss_last"] < m["sft_train_loss_first"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def test_qlora_layers_are_4bit_nf4_double_quant_and_train(tmp_path):
    import bitsandbytes as bnb
    from peft import PeftModel

    from kfrlhf.common.models import load_causal_lm

    model = load_causal_lm("tiny-opt", load_in_4bit=True)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers
    for layer in layers:
        w = layer.weight
        assert w.dtype == torch.uint8 and w.numel() * 2 == layer.in_features * layer.out_features  # 2 weights a byte
        assert w.quant_state.quant_type == "nf4" and w.quant_state.nested  # double quantisation
        assert layer.compute_dtype == torch.bfloat16
    rows = sft_rows(200)
    m = train_sft(_cfg(load_in_4bit=True, max_steps=20, eval_steps=20), rows[:180], rows[180:], tmp_path)
    assert m["sft_eval_loss"] < m["sft_eval_loss_before"]
    assert isinstance(PeftModel.from_pretrained(load_causal_lm("tiny-opt"), tmp_path / "adapter"), PeftModel)


def test_packing_cuts_constant_length_blocks_that_attend_only_within_themselves(tmp_path):
    """A padding-free flattened batch (TRL's best-fit packing) mixes its sequences under sdpa attention:
    each row of a packed batch must give the same logits alone as beside the others."""
    cfg = _cfg(seq_length=32, batch_size=4)
    rows = sft_rows(40)
    trainer = sft_trainer(cfg, rows[:32], rows[32:], tmp_path, "none")
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape == (4, 32)
    assert (batch["labels"] != -100).all()  # blocks cut from the text stream: no padding
    model = trainer.model.eval()
    with torch.no_grad():
        together = model(**batch).logits
        alone = torch.cat([model(**{k: v[i : i + 1] for k, v in batch.items()}).logits for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)
