"""RLAIF: the constitution file, both-orders judging, the labelled set against a hand-made judge, the LM
judge on a real tiny model, and the RLAIF pipeline end to end through kfp.local."""

import json
import math

import pytest
import torch

from kfrlhf.common.config import ConfigError
from kfrlhf.common.data_sources import read_split, write_jsonl
from kfrlhf.common.models import TINY_CAUSAL, load_causal_lm
from kfrlhf.pipelines.cli import GATE_REFUSED, main
from kfrlhf.rlaif.constitution import DEFAULT, load_constitution
from kfrlhf.rlaif.judge import LexiconJudge, LMJudge, judge_both_orders
from kfrlhf.rlaif.stage import CHUNK, TooFewPairs, kept_share_bound, label_pairs
from kfrlhf.rlaif.stage import run as run_rlaif
from tests.conftest import TEMPLATE
from tests.test_pipeline import FAST

POLITE, RUDE = "Thanks for asking! Start small.", "Ugh, fine. Start small."
BIAS = {"fair": 0.5, "biased": 3.0, "against": -3.0}  # the stand-in judge's position bias per prompt


def polite_judge(prompts, firsts, seconds):
    """Log-odds for answer A: +2 when only A thanks, -2 when only B does, plus the prompt's position bias."""
    return torch.tensor(
        [BIAS[p] + 2.0 * (("Thanks" in a) - ("Thanks" in b)) for p, a, b in zip(prompts, firsts, seconds)]
    )


def always_a(prompts, firsts, seconds):
    """A judge with nothing but position bias: "A", sure of it, whatever the answers."""
    return torch.full((len(prompts),), 4.0)


def test_both_orders_keep_only_consistent_verdicts():
    prompts = ["fair", "fair", "biased", "fair", "against"]
    a = [POLITE, RUDE, POLITE, RUDE, RUDE]
    b = [RUDE, POLITE, RUDE, RUDE, POLITE]
    judged = judge_both_orders(polite_judge, prompts, a, b)
    # fair: 2.5 / -1.5 and -1.5 / 2.5 agree; biased: 5 / 1 both say A; equal answers: 0.5 / 0.5; against: -5 / -1.
    assert judged["verdicts"] == [0, 1, None, None, None]
    assert judged["first_preferred"] == pytest.approx(6 / 10)
    rows, judgements, counts = label_pairs(polite_judge, [f"Q{i}" for i in range(5)], prompts, a, b)
    assert rows == [
        {"prompt": "Q0", "chosen": POLITE, "rejected": RUDE},
        {"prompt": "Q1", "chosen": POLITE, "rejected": RUDE},
    ]
    assert counts == {"pairs": 5, "kept": 2, "first_preferred": 0.6, "stopped_early": False}
    assert [j["verdict"] for j in judgements] == judged["verdicts"] and judgements[2]["scores"] == [5.0, 1.0]


def test_the_labels_follow_the_judge_not_the_data():
    """A judge that prefers rudeness labels rude answers chosen; one that always says "A" labels nothing."""
    rude_judge = lambda p, f, s: -polite_judge(["fair"] * len(p), f, s) + 1.0  # noqa: E731
    rows, _, counts = label_pairs(rude_judge, ["Q0", "Q1"], ["x", "x"], [POLITE, RUDE], [RUDE, POLITE])
    assert [r["chosen"] for r in rows] == [RUDE, RUDE] and counts["kept"] == 2
    rows, _, counts = label_pairs(LexiconJudge(), ["Q0", "Q1"], ["x", "x"], [POLITE, RUDE], [RUDE, RUDE])
    assert rows == [{"prompt": "Q0", "chosen": POLITE, "rejected": RUDE}] and counts["kept"] == 1  # a tie is dropped
    rows, _, counts = label_pairs(always_a, ["Q0", "Q1"], ["x", "x"], [POLITE, RUDE], [RUDE, POLITE])
    assert rows == [] and counts == {"pairs": 2, "kept": 0, "first_preferred": 1.0, "stopped_early": False}


def test_kept_share_bound_is_generous_and_tightens():
    assert kept_share_bound(0, 64) == pytest.approx(0.1233, abs=1e-4)  # Wilson, z = 3, worked by hand
    for kept, judged in ((0, 32), (5, 32), (30, 32), (40, 400)):
        assert kept / judged < kept_share_bound(kept, judged) <= 1
    assert kept_share_bound(0, 256) < kept_share_bound(0, 64) < kept_share_bound(0, 32)


def test_a_judge_that_keeps_nothing_stops_early_and_one_that_keeps_enough_does_not():
    """256 pairs, 50 needed: after 32 pairs with none kept 50 is still within the bound (0.22 x 256 = 56),
    after 64 it is not (0.12 x 256 = 32): judging stops there, not after all 256 (512 judgements)."""
    asked = []

    def counting(judge):
        return lambda p, f, s: asked.append(len(p)) or judge(p, f, s)

    n, qs = 256, [f"Q{i}" for i in range(256)]
    rows, judgements, counts = label_pairs(counting(always_a), qs, ["fair"] * n, [POLITE] * n, [RUDE] * n, need=50)
    assert counts["stopped_early"] and counts["pairs"] == len(judgements) == 2 * CHUNK and sum(asked) == 4 * CHUNK
    assert rows == [] and counts["first_preferred"] == 1.0
    asked.clear()  # a judge that keeps one pair in four (~64 of 256) is never stopped
    a = [POLITE if i % 4 == 0 else RUDE for i in range(n)]
    rows, _, counts = label_pairs(counting(polite_judge), qs, ["fair"] * n, a, [RUDE] * n, need=50)
    assert not counts["stopped_early"] and counts["pairs"] == n and len(rows) == 64 and sum(asked) == 2 * n


def _constant_judge(letter: str) -> LMJudge:
    """A real tiny causal LM whose final layer norm ignores its input: every verdict is `letter`."""
    model = load_causal_lm(TINY_CAUSAL)
    judge = LMJudge(TINY_CAUSAL, load_constitution(), batch_size=2, model=model)
    _, id_a, id_b = judge.encode(judge.render("q", "x", "y"))
    norm, emb = model.model.decoder.final_layer_norm, model.get_output_embeddings().weight
    with torch.no_grad():
        norm.weight.zero_()
        norm.bias.copy_(emb[id_a] - emb[id_b] if letter == "A" else emb[id_b] - emb[id_a])
    return judge


def test_lm_judge_scores_are_the_models_letter_log_odds(tiny_lm_dir):
    judge = LMJudge(str(tiny_lm_dir), ["Be kind."], batch_size=3)
    prompts, a, b = ["Q: tea?", "Q: how do I take care of bread and bikes?"] * 2, [POLITE, RUDE] * 2, [RUDE, "ok"] * 2
    batched = judge(prompts, a, b)
    model = load_causal_lm(str(tiny_lm_dir)).eval()
    for i, row in enumerate(zip(prompts, a, b)):
        ids, id_a, id_b = judge.encode(judge.render(*row))
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
        assert batched[i].item() == pytest.approx(
            (logp[id_a] - logp[id_b]).item(), abs=1e-4
        )  # left padding is invisible
    assert id_a != id_b and judge.tokenizer.decode([id_a]).strip() == "A"
    for letter in "AB":
        judged = judge_both_orders(_constant_judge(letter), prompts, a, b)
        assert judged["verdicts"] == [None] * 4 and judged["first_preferred"] == (1.0 if letter == "A" else 0.0)


def test_run_rlaif_labels_the_sft_models_own_answers(tiny_lm_dir, tmp_path):
    """On a real (tiny) policy's sampled answers, the labelled set is exactly the judge's consistent verdicts."""
    prompts = tmp_path / "prompts"
    for split, n in (("train", 12), ("eval", 4)):
        write_jsonl(
            [{"prompt": TEMPLATE.format(question=f"What about tea {i}?")} for i in range(n)], prompts / f"{split}.jsonl"
        )
    longer = lambda p, f, s: torch.tensor([float(len(x) - len(y)) for x, y in zip(f, s)])  # noqa: E731
    cfg = {"num_prompts": 12, "num_eval_prompts": 4, "max_new_tokens": 6, "batch_size": 4, "min_pairs": 1}
    metrics = run_rlaif(cfg, str(tiny_lm_dir), str(prompts), str(tmp_path / "out"), judge=longer)
    judgements = [json.loads(line) for line in (tmp_path / "out" / "judgements.jsonl").read_text().splitlines()]
    assert len(judgements) == 16 and len({(j["a"], j["b"]) for j in judgements}) > 1
    for split in ("train", "eval"):
        expected = [
            {
                "prompt": j["prompt"],
                **dict(zip(("chosen", "rejected"), sorted((j["a"], j["b"]), key=len, reverse=True))),
            }
            for j in judgements
            if j["split"] == split and len(j["a"]) != len(j["b"])
        ]
        assert read_split(tmp_path / "out", split) == expected
    dropped = sum(len(j["a"]) == len(j["b"]) for j in judgements)
    assert metrics["rlaif_dropped_pairs"] == dropped and metrics["rlaif_pairs"] == 16
    assert metrics["rlaif_agreement_rate"] == pytest.approx(1 - dropped / 16)


def test_run_rlaif_stops_early_and_keeps_what_it_judged(tiny_lm_dir, tmp_path):
    prompts = tmp_path / "prompts"
    for split, n in (("train", 96), ("eval", 4)):
        write_jsonl([{"prompt": TEMPLATE.format(question=f"Tea {i}?")} for i in range(n)], prompts / f"{split}.jsonl")
    cfg = {"num_prompts": 96, "num_eval_prompts": 4, "max_new_tokens": 2, "batch_size": 32, "min_pairs": 40}
    # after 32 pairs none kept: at most 0.22 x 96 = 21 < 40 would be: the other 64 are never judged
    with pytest.raises(TooFewPairs, match="0 of the first 32 training pairs .of 96.*position A chosen in 100%"):
        run_rlaif(cfg, str(tiny_lm_dir), str(prompts), str(tmp_path / "out"), judge=always_a)
    judgements = (tmp_path / "out" / "judgements.jsonl").read_text().splitlines()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(judgements) == 32 and metrics["rlaif_pairs"] == 32 and metrics["rlaif_eval_pairs"] == 0


def test_default_constitution_and_bad_files(tmp_path):
    principles = load_constitution()
    assert len(principles) >= 3 and any("polite" in p for p in principles) and load_constitution(DEFAULT) == principles
    cases = {
        "- Be kind.\n- Be helpful: say how.\n": "entry 2 must be a non-empty string, got {'Be helpful': 'say how.'}",
        "- Be kind.\n- ''\n": "entry 2 must be a non-empty string",
        "principles: [a]\n": "must be a non-empty YAML list of principles",
        "": "must be a non-empty YAML list of principles",
        "- [unclosed\n": "is not valid YAML",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=r"^rlaif\.constitution: ") as err:
            load_constitution(path)
        assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_constitution(tmp_path / "missing.yaml")


def test_rlaif_run_through_kfp_local(tmp_path, capfd):
    """The real pipeline on the tiny preset (its lexicon judge), shortened; SFT long enough to answer in the
    sample styles, so that some pairs differ in style and survive the judging."""
    out = tmp_path / "run"
    args = ["run", "--pipeline", "rlaif", "--output", str(out), "--report-to", "none"]
    shorter = ["sft.max_steps=200", "sft.eval_steps=200", "rlaif.num_prompts=16", "rlaif.num_eval_prompts=16"]
    for item in FAST + shorter + ["rlaif.min_pairs=1", "reward.min_accuracy=0", "gate.min_win_rate=1.0"]:
        args += ["--set", item]
    assert main(args) == GATE_REFUSED  # no win rate passes the gate's 1.0
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"] == "rlaif" and report["rlaif_pairs"] == 32
    assert report["rlaif_kept_pairs"] + report["rlaif_dropped_pairs"] == 32
    assert report["rlaif_agreement_rate"] == pytest.approx(report["rlaif_kept_pairs"] / 32)
    assert report["reward_eval_pairs"] == report["rlaif_eval_pairs"]  # the reward model read the judge's pairs
    for key in ("reward_before", "reward_after", "kl", "win_rate"):
        assert math.isfinite(report[key]), key
    printed = capfd.readouterr().out
    stages = [line[:6] for line in printed.splitlines() if line.startswith("[")]
    assert stages[:4] == ["[1/10]", "[2/10]", "[3/10]", "[4/10]"]
    assert "rlaif_agreement_rate" in printed and "rlaif_agreement_rate" in (out / "report.md").read_text()
    (judgements,) = (out / "pipeline_root").rglob("judgements.jsonl")
    rows = [json.loads(line) for line in judgements.read_text().splitlines()]
    judge = LexiconJudge()
    assert [r["verdict"] is None for r in rows] == [judge.score(r["a"]) == judge.score(r["b"]) for r in rows]


def test_a_bad_constitution_fails_before_the_run(tmp_path, capsys):
    bad = tmp_path / "principles.yaml"
    bad.write_text("- Be kind.\n- 3\n")
    args = ["run", "--pipeline", "rlaif", "--output", str(tmp_path / "x"), "--set", f"rlaif.constitution={bad}"]
    assert main(args) == 2
    assert f"rlaif.constitution: {bad} entry 2 must be a non-empty string, got 3" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
