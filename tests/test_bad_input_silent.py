"""Silent: inputs that used to be taken and to do something else than meant (drop the preset, end every answer
at once, read half a folder, render a manifest a cluster refuses, kill a run without a word) are refused in one
line before any work, or read as meant."""

import signal

import pytest

from kfrlhf.common import k8s_syntax
from kfrlhf.common.checkpoint import StopOnSigterm
from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.definitions.run_config import load_config
from tests.bad_input import fails_cleanly, finished_run, lines

SFT = {"question": "What is 2+2?", "response": "4"}


def test_an_empty_section_keeps_the_presets_values(tmp_path):
    (tmp_path / "empty.yaml").write_text("ppo:\nsft:\n")
    assert load_config("tiny", [tmp_path / "empty.yaml"]) == load_config("tiny")
    assert load_config("tiny", [tmp_path / "empty.yaml"]).ppo != load_config(None).ppo  # the tiny preset's


# name: (argv, expected text)
CASES = {
    "empty-stop-string": (["--set", 'ppo.stop_strings=[""]'], "ppo.stop_strings must be non-empty strings"),
    "serve-memory-lots": (["--set", "serve.memory=lots"], "serve.memory must be a Kubernetes quantity"),
    "serve-cpu-with-space": (["--set", "serve.cpu=4 cores"], "serve.cpu must be a Kubernetes quantity"),
    "serve-gpu-type": (["--set", "serve.gpu_type=nvidia gpu"], "serve.gpu_type must be a Kubernetes qualified name"),
    "serve-service-account": (["--set", "serve.service_account=My_SA"], "serve.service_account must be empty or a"),
    "eval-fraction-0.95": (["--set", "data.eval_fraction=0.95"], "data.eval_fraction must be > 0 and at most 0.5"),
    "min-pairs-unreachable": (
        ["--set", "rlaif.min_pairs=500", "--set", "rlaif.num_prompts=100"],
        "rlaif.min_pairs (500) exceeds rlaif.num_prompts (100): each prompt gives at most one training pair",
    ),
    "causal-lm-as-second-judge": (
        ["--set", "eval.second_judge=tiny-opt"],
        "eval.second_judge 'tiny-opt' (OPTForCausalLM) is a causal LM: give a sequence classifier",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_config_values_refused_before_work(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, expected = CASES[case]
    fails_cleanly(capsys, tmp_path, ["run", *argv, "--output", "out/x"], expected)


def test_a_number_where_text_belongs_is_read_as_text():
    cfg = load_config(None, overrides=["serve.cpu=4", "serve.memory=0.5"])
    assert (cfg.serve.cpu, cfg.serve.memory) == ("4", "0.5")


# name: (argv, expected text): cluster values against Kubernetes' and the registries' syntax
CLUSTER = {
    "tag-with-space": (["--tag", "v1 beta"], "argument --tag: 'v1 beta' is not an image tag"),
    "empty-registry": (["--registry", ""], "argument --registry: '' is not an image registry"),
    "registry-with-scheme": (["--registry", "https://ghcr.io/x"], "is not an image registry"),
    "gpu-type-space": (["--gpu-type", "nvidia gpu"], "argument --gpu-type: 'nvidia gpu' is not a Kubernetes"),
    "pull-secret-underscore": (["--image-pull-secret", "my_secret"], "is not a DNS-1123 subdomain"),
}


@pytest.mark.parametrize("case", CLUSTER)
def test_cluster_values_refused_by_their_syntax(case, capsys, tmp_path):
    argv, expected = CLUSTER[case]
    with pytest.raises(SystemExit) as stop:
        main(["compile", "--output", str(tmp_path / "out"), *argv])
    assert stop.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_image_tag_from_the_environment_is_checked_too(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_IMAGE_TAG", "latest please")
    with pytest.raises(SystemExit):
        main(["compile", "--output", str(tmp_path / "out")])
    assert "argument --tag: 'latest please' is not an image tag" in capsys.readouterr().err


def test_k8s_syntax_against_upstreams_examples():
    """Examples from k8s.io/apimachinery's quantity_test.go / validation_test.go and distribution/reference's
    reference_test.go: accepted and refused alike."""
    assert all(map(k8s_syntax.is_quantity, ["0", "1", "32Gi", "500m", "1.5", ".5", "5e3", "1E-3", "100Ki", "1n"]))
    assert not any(map(k8s_syntax.is_quantity, ["lots", "32 Gi", "1.5.5", "Gi", "1GB", "-1", "1i", ""]))
    assert all(map(k8s_syntax.is_dns1123_label, ["a", "ab-c", "0", "a" * 63]))
    assert not any(map(k8s_syntax.is_dns1123_label, ["A", "-a", "a-", "a_b", "a.b", "a" * 64, ""]))
    assert all(
        map(k8s_syntax.is_image_name, ["test_com", "test.com:10304/foo_bar", "localhost:5000/ml", "[::1]:5000/a"])
    )
    assert not any(map(k8s_syntax.is_image_name, ["", "a b", "ghcr.io/", "https://ghcr.io/x", "foo/Bar", "a" * 256]))
    assert all(map(k8s_syntax.is_image_tag, ["tag", "0.1.0", "v1_beta", "x" * 128]))
    assert not any(map(k8s_syntax.is_image_tag, ["", ".x", "-x", "a b", "x" * 129]))
    assert k8s_syntax.is_image_digest("sha256:" + "ab" * 32) and not k8s_syntax.is_image_digest("sha256:12")
    assert k8s_syntax.is_qualified_name("nvidia.com/gpu") and not k8s_syntax.is_qualified_name("Nvidia.com/gpu")


def test_compare_names_runs_of_the_same_folder_name_by_their_parents(capsys, tmp_path):
    for parent in ("a", "b"):
        finished_run(tmp_path / parent / "run")
    assert main(["compare", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run"), "--output", str(tmp_path)]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:4]]
    assert rows == ["a/run", "b/run"]


def test_compare_refuses_a_run_given_twice(capsys, tmp_path):
    finished_run(tmp_path / "run")
    run = str(tmp_path / "run")
    fails_cleanly(capsys, tmp_path, ["compare", run, f"{run}/", "--output", str(tmp_path / "c")], "is given twice")


def test_an_output_inside_another_runs_folder_is_refused(capsys, tmp_path):
    from kfrlhf.common.outputs import mark

    (tmp_path / "run").mkdir()
    mark(tmp_path / "run", "run")
    fails_cleanly(
        capsys, tmp_path, ["run", "--output", str(tmp_path / "run" / "nested")], "the output of rlhf run: give a folder"
    )


def test_sighup_is_a_stop_like_sigterm():
    import os

    before = signal.getsignal(signal.SIGHUP)
    with StopOnSigterm() as stop:
        os.kill(os.getpid(), signal.SIGHUP)  # without the handler this would end the test process
        assert stop.requested
    assert signal.getsignal(signal.SIGHUP) == before


def test_console_stops_on_sighup_with_its_name():
    from kfrlhf.pipelines.local.console import Stopped

    stopped = Stopped("after [2/9] sft", signal.SIGHUP)
    assert str(stopped) == "by SIGHUP after [2/9] sft" and stopped.exit_code == 129


# name: (files {path: bytes}, extra --set, expected text): a dataset folder read as one type and by its splits
FOLDERS = {
    "jsonl-and-csv": ({"d/a.jsonl": lines(SFT), "d/b.csv": b"question,response\nq,r\n"}, [], "holds files of 2 types"),
    "split-not-in-folder": ({"d/a.jsonl": lines(SFT)}, ["--set", "data.split=test"], "no split 'test' in this folder"),
}


@pytest.mark.parametrize("case", FOLDERS)
def test_a_dataset_folder_is_read_whole_or_refused(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files, extra, expected = FOLDERS[case]
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(content)
    argv = ["run", "--set", "data.sft_dataset=d", *extra, "--output", "out/x"]
    fails_cleanly(capsys, tmp_path, argv, expected)


def test_a_saved_causal_lm_as_second_judge_is_refused_before_work(tiny_lm_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--set", f"eval.second_judge={tiny_lm_dir}", "--output", "out/x"]
    fails_cleanly(capsys, tmp_path, argv, "(OPTForCausalLM) is a causal LM")
