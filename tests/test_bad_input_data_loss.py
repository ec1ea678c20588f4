"""Data loss: a command never overwrites a file it did not write, whatever the file's name (the `.rlhf-output`
marker rule of kfrlhf.common.outputs, for every command that writes into a folder the user names)."""

import pytest

from kfrlhf.common.outputs import MARKER, OutputRefused, check_output_dir, mark
from kfrlhf.pipelines.cli import main
from tests.bad_input import fails_cleanly, finished_run, snapshot

# name: (argv before the output path, the file that stands for the user's in a folder given as --output)
OUTPUT_COMMANDS = {
    "run": (["run", "--output"], "notes.txt"),
    "compile": (["compile", "--output"], "notes.txt"),
    "compile-own-file-name": (["compile", "--output"], "rlhf.yaml"),  # a name compile writes, not its file
    "compile-manifests": (["compile", "--output", "fresh", "--manifests"], "notes.txt"),
    "compile-manifests-kustomization": (["compile", "--output", "fresh", "--manifests"], "kustomization.yaml"),
    "compare": (["compare", "done", "--output"], "compare.md"),
    "models-prepare-smollm2": (["models", "prepare", "smollm2-135m-instruct", "--output"], "notes.txt"),
    "models-prepare-minilm": (["models", "prepare", "all-minilm-l6-v2", "--output"], "notes.txt"),
    "models-prepare-own-file-name": (["models", "prepare", "all-minilm-l6-v2", "--output"], "config.json"),
}


@pytest.mark.parametrize("target", ["folder", "file"])
@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_output_never_replaces_a_users_files(command, target, capsys, tmp_path, monkeypatch):
    """A folder holding a user's file, or a plain file, as --output: one line, exit 2, every byte left as it was."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLHF_MODEL_CACHE", str(tmp_path / "cache"))
    finished_run(tmp_path / "done")
    argv, users = OUTPUT_COMMANDS[command]
    if target == "folder":
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / users).write_text("my own notes\n")
    else:
        (tmp_path / "mine").write_text("my own notes\n")
    before = snapshot(tmp_path)
    err = fails_cleanly(capsys, tmp_path, [*argv, "mine"], "mine")
    assert ("is a file, not a directory" if target == "file" else "did not write") in err
    assert snapshot(tmp_path) == before


def test_models_prepare_writes_to_output_and_again_over_its_own(capsys, tmp_path):
    out = tmp_path / "minilm"
    for _ in range(2):  # the second time over its own earlier output
        assert main(["models", "prepare", "all-minilm-l6-v2", "--output", str(out)]) == 0
        assert capsys.readouterr().out == f"{out}\n"
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()


def test_output_checks(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty", "run") == tmp_path / "empty"
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "report.json").write_text("{}")
    mark(tmp_path / "own", "run")
    assert check_output_dir(tmp_path / "own", "run") == tmp_path / "own"
    with pytest.raises(OutputRefused, match="did not write"):  # another command's output is not this one's
        check_output_dir(tmp_path / "own", "models prepare")


def test_a_command_that_lists_its_files_replaces_only_those(tmp_path):
    """compile's marker lists the files it wrote: its own again, never a file the marker does not list."""
    out = tmp_path / "compiled"
    out.mkdir()
    (out / "rlhf.yaml").write_text("compiled\n")
    with pytest.raises(OutputRefused, match=r"did not write \(rlhf\.yaml;"):  # the name alone is not enough
        check_output_dir(out, "compile", names=True)
    mark(out, "compile", ["rlhf.yaml"])
    assert check_output_dir(out, "compile", names=True) == out
    mark(out, "compile", ["dpo.yaml"])  # a later run adds to the list
    assert (out / MARKER).read_text() == "rlhf compile\ndpo.yaml\nrlhf.yaml\n"
    (out / "kustomization.yaml").write_text("mine\n")
    with pytest.raises(OutputRefused, match=r"\(kustomization\.yaml;"):
        check_output_dir(out, "compile", names=True)


def test_compare_replaces_its_own_files(tmp_path, capsys):
    finished_run(tmp_path / "done")
    (tmp_path / "notes.txt").write_text("mine")
    for _ in range(2):  # beside the user's other files, over its own compare.md/.html
        assert main(["compare", str(tmp_path / "done"), "--output", str(tmp_path)]) == 0
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "compare.html").is_file()
