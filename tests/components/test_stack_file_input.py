"""Hostile stack files are refused the same way on every path that reads one: duplicate keys, bytes that are not
UTF-8 text, aliases that expand without bound, shapes that are not a stack file. Exit 2, one message naming the
file, the line or key, and what was expected; never a traceback, never last-one-wins."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from components import config
from components.config.files import MAX_DEPTH, MAX_NODES
from llmops.cli import main
from llmops.offline.project import ProjectError, load_project, load_stack
from runbooks.engine import InputError
from runbooks.targets import load_targets
from tests.conftest import ROOT, write_program_copy

DEV = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()


def line_of(text: str, line: str, start: int = 1) -> int:
    """1-based number of the first line equal to `line` at or after line `start`."""
    lines = text.splitlines()
    return lines.index(line, start - 1) + 1


def insert_after(text: str, line_number: int, new_line: str) -> str:
    lines = text.splitlines(keepends=True)
    lines.insert(line_number, new_line + "\n")
    return "".join(lines)


def program_with(tmp_path: Path, stack_file: bytes | str, stack_yaml: dict) -> Path:
    """This project's program with a dev stack file of exactly these bytes."""
    directory = write_program_copy(tmp_path, "dev", stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    path.write_bytes(stack_file.encode() if isinstance(stack_file, str) else stack_file)
    return directory


def refusals(directory: Path, capsys) -> dict[str, str]:
    """The message of each path that reads a stack file (each must refuse with exit 2)."""
    path = directory / "stacks" / "Pulumi.dev.yaml"
    found = {}
    with pytest.raises(config.ConfigError) as caught:
        config.load_file(path)
    found["load_file"] = str(caught.value)
    with pytest.raises(ProjectError) as caught:
        load_stack(load_project(directory), "dev")
    found["load_stack"] = str(caught.value)
    for command in (["preview"], ["policy", "check"]):
        code = main([*command, "--program", str(directory), "--stack", "dev"])
        captured = capsys.readouterr()
        assert code == 2, captured
        assert "Traceback" not in captured.err
        found[" ".join(command)] = captured.err.removeprefix("llmops: ").strip()
    return found


def assert_refused_everywhere(directory: Path, capsys, expected: str) -> None:
    for entry, message in refusals(directory, capsys).items():
        assert message == expected, entry


def test_a_duplicate_key_inside_a_list_item_is_refused_with_both_lines(tmp_path, stack_yaml, capsys):
    first = line_of(DEV, "      minSize: 0")
    text = insert_after(DEV, first + 1, "      minSize: 1")  # after desiredSize, inside gpuPools[0]
    directory = program_with(tmp_path, text, stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    assert_refused_everywhere(directory, capsys, f'{path}: line {first + 2}: duplicate key "minSize" in '
                              f"config.llmops:gpuPools[0] (first on line {first}); expected each key once")


def test_a_duplicate_top_level_key_is_refused_with_both_lines(tmp_path, stack_yaml, capsys):
    first = line_of(DEV, "  llmops:models:")
    text = DEV + "  llmops:models: []\n"
    directory = program_with(tmp_path, text, stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    last = len(text.splitlines())
    assert_refused_everywhere(directory, capsys, f'{path}: line {last}: duplicate key "llmops:models" in config '
                              f"(first on line {first}); expected each key once")


def test_a_bare_key_and_its_namespaced_spelling_are_the_same_key(tmp_path, stack_yaml, capsys):
    first = line_of(DEV, "  llmops:models:")
    text = DEV + "  models: []\n"
    directory = program_with(tmp_path, text, stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    assert_refused_everywhere(directory, capsys, f'{path}: line {len(text.splitlines())}: key "models" and key '
                              f'"llmops:models" on line {first} are the same key, "llmops:models" (a bare key takes '
                              "the project's namespace); expected each key once")


def test_a_file_that_is_not_utf8_is_refused_with_the_line(tmp_path, stack_yaml, capsys):
    data = DEV.encode().replace(b"owner: ml-platform", b"owner: ml-\xe9quipe")
    directory = program_with(tmp_path, data, stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    line = line_of(DEV, "    owner: ml-platform")
    assert_refused_everywhere(directory, capsys, f"{path}: line {line}, column 15: not UTF-8 (byte 0xe9); "
                              "expected UTF-8 text (YAML)")


def test_a_binary_file_is_refused(tmp_path, stack_yaml, capsys):
    directory = program_with(tmp_path, b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00>\x00", stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    assert_refused_everywhere(directory, capsys, f"{path}: line 1, column 8: a NUL byte: a binary file; "
                              "expected UTF-8 text (YAML)")


def billion_laughs(levels: int = 9, fan_out: int = 10) -> str:
    lines = ["config:", '  llmops:l0: &l0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"  llmops:l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * fan_out)}]")
    return "\n".join(lines) + "\n"


def test_aliases_that_expand_beyond_a_sane_size_are_refused_by_counting(tmp_path, stack_yaml, capsys):
    text = billion_laughs()  # 10**9 strings once expanded; under 1 KiB of YAML
    directory = program_with(tmp_path, text, stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    # l5 is the first level past the limit: 1 + 10 * 11111 nodes.
    assert_refused_everywhere(directory, capsys, f"{path}: line 7: aliases expand this to more than {MAX_NODES} "
                              "nodes; expected plain data")
    started = time.perf_counter()
    with pytest.raises(config.ConfigError):
        config.load_file(path)
    print(f"billion laughs refused in {time.perf_counter() - started:.4f} s")  # measured, not asserted


def test_a_merge_key_bomb_is_refused_too(tmp_path, stack_yaml, capsys):
    lines = ["config:", "  llmops:m0: &m0 {a: 1, b: 2}"]
    for level in range(1, 9):
        lines.append(f"  llmops:m{level}: &m{level} {{<<: [{', '.join([f'*m{level - 1}'] * 10)}]}}")
    directory = program_with(tmp_path, "\n".join(lines) + "\n", stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    with pytest.raises(config.ConfigError, match=rf"^{path}: line \d+: aliases expand this to more than {MAX_NODES} nodes"):
        config.load_file(path)


def test_a_recursive_alias_is_refused(tmp_path, stack_yaml, capsys):
    directory = program_with(tmp_path, "config:\n  llmops:tags: &tags\n    owner: *tags\n", stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    assert_refused_everywhere(directory, capsys, f"{path}: line 2: an alias refers to a node that contains it; "
                              "expected plain data without cycles")


def test_nesting_too_deep_for_the_parser_is_refused_not_a_crash(tmp_path, stack_yaml, capsys):
    # libyaml's composer recurses in C: 100000 levels crash the interpreter unless refused first.
    directory = program_with(tmp_path, "config:\n  llmops:tags: " + "[" * 100_000 + "]" * 100_000 + "\n", stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    assert_refused_everywhere(directory, capsys, f"{path}: line 2: nested deeper than {MAX_DEPTH} levels; "
                              "expected plain data")


def test_a_yaml_list_is_not_a_stack_file(tmp_path, stack_yaml, capsys):
    directory = program_with(tmp_path, "- config\n- llmops:environment\n", stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    assert_refused_everywhere(directory, capsys, f"{path}: expected a mapping at the top level (config: ...), found a list")


def test_config_that_is_a_list_is_refused(tmp_path, stack_yaml, capsys):
    directory = program_with(tmp_path, "config:\n  - llmops:environment\n", stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    assert_refused_everywhere(directory, capsys, f"{path}: config: expected a mapping of keys to values, found a list")


def test_a_config_key_that_is_not_text_is_refused(tmp_path, stack_yaml, capsys):
    directory = program_with(tmp_path, DEV + "  12: twelve\n", stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    assert_refused_everywhere(directory, capsys, f"{path}: line {len(DEV.splitlines()) + 1}: config key 12: "
                              "expected a key name such as llmops:models")


def test_invalid_yaml_names_the_line_and_column(tmp_path, stack_yaml, capsys):
    directory = program_with(tmp_path, "config:\n  llmops:environment: dev\n   bad: [\n", stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    messages = refusals(directory, capsys)
    assert set(messages.values()) == {messages["load_file"]}
    assert messages["load_file"].startswith(f"{path}: line 3, column 7: not valid YAML: ")


def test_an_empty_stack_file_is_a_stack_without_config(tmp_path, stack_yaml, capsys):
    # As for the Pulumi CLI: no config at all, so our program reports what is missing.
    directory = program_with(tmp_path, "# nothing yet\n", stack_yaml)
    assert load_stack(load_project(directory), "dev").config == {}
    assert main(["preview", "--program", str(directory), "--stack", "dev"]) == 2
    assert "llmops:environment: required key is missing" in capsys.readouterr().err


def test_a_directory_or_a_huge_stream_is_not_a_stack_file(tmp_path):
    with pytest.raises(config.ConfigError, match=rf"^{tmp_path}: cannot read \(Is a directory\); expected a file$"):
        config.load_file(tmp_path)
    with pytest.raises(config.ConfigError, match=r"^/dev/zero: more than 1 MiB; expected a file of at most 1 MiB$"):
        config.load_file("/dev/zero")


def test_a_project_file_with_wrong_types_is_refused(tmp_path):
    (tmp_path / "__main__.py").write_text("")
    (tmp_path / "Pulumi.yaml").write_text("name: p\nruntime: python\nstackConfigDir: [stacks]\n")
    with pytest.raises(ProjectError, match=r"Pulumi.yaml: stackConfigDir = \['stacks'\]: expected a directory name"):
        load_project(tmp_path)
    (tmp_path / "Pulumi.yaml").write_text("name: p\nruntime: python\nmain: 3\n")
    with pytest.raises(ProjectError, match=r"Pulumi.yaml: main = 3: expected a file or directory name"):
        load_project(tmp_path)
    (tmp_path / "Pulumi.yaml").write_text("name: p\nname: q\nruntime: python\n")
    with pytest.raises(ProjectError, match=r'Pulumi.yaml: line 2: duplicate key "name" at the top level \(first on line 1\)'):
        load_project(tmp_path)


def test_runbook_targets_files_get_the_same_refusals(tmp_path):
    path = tmp_path / "dev.yaml"
    path.write_text("environment: dev\nstack_file: stacks/Pulumi.dev.yaml\naws:\n  region: us-east-1\n  region: us-west-2\n")
    with pytest.raises(InputError, match=rf'^{path}: line 5: duplicate key "region" in aws \(first on line 4\); '
                                         "expected each key once$"):
        load_targets("dev", tmp_path)
    path.write_bytes(b"environment: d\xffv\n")
    with pytest.raises(InputError, match=rf"^{path}: line 1, column 15: not UTF-8 \(byte 0xff\)"):
        load_targets("dev", tmp_path)
    path.write_text(billion_laughs().replace("config:", "aws:"))
    with pytest.raises(InputError, match=rf"^{path}: line 7: aliases expand this to more than {MAX_NODES} nodes"):
        load_targets("dev", tmp_path)


def test_our_stack_files_load_the_same_through_every_reader(project):
    for name in ("dev", "staging", "prod"):
        settings = load_stack(project, name)
        assert config.load_file(settings.file) == config.parse(settings.config, str(settings.file))


def test_dates_stay_text_as_the_pulumi_cli_passes_them(tmp_path, stack_yaml):
    directory = program_with(tmp_path, DEV.replace("    owner: ml-platform", "    owner: ml-platform\n    since: 2024-01-01"),
                             stack_yaml)
    settings = load_stack(load_project(directory), "dev")
    assert json.loads(settings.config["llmops:tags"])["since"] == "2024-01-01"


def test_a_value_json_cannot_hold_is_refused_with_its_key(tmp_path, stack_yaml, capsys):
    directory = program_with(tmp_path, DEV.replace("    owner: ml-platform", "    owner: !!set {a, b}"), stack_yaml)
    path = directory / "stacks" / "Pulumi.dev.yaml"
    assert_refused_everywhere(directory, capsys, f"{path}: llmops:tags.owner: a set; expected text, a number, "
                              "a boolean, a list or a mapping")
