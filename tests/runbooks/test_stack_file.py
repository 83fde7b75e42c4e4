"""Typed edits of a stack file (runbooks/stack_file.py) on a copy of the prod stack file: the value changes,
the comments and quoting stay, the result is a valid stack config -- and a refused edit leaves the file as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components import config as stack_config
from runbooks.stack_file import (
    StackFileError,
    canary_removal_edit,
    canary_weight_edit,
    edit_stack_file,
    pin_release,
    release_edit,
    set_active_region,
    set_canary_weight,
)

ROOT = Path(__file__).resolve().parents[2]
COMMENTS = ("# prod: two regions (us-east-1 primary, us-west-2 secondary)",
            "canary:                     # staged but taking no traffic: weight 0 renders no canary objects",
            "routing: failover                        # PRIMARY/SECONDARY; latency for active-active",
            "  # Policy pack enforcement for this stack (`llmops policy check`, `llmops policy config`).\n"
            "  llmops:policy:")


@pytest.fixture
def prod(tmp_path) -> Path:
    path = tmp_path / "Pulumi.prod.yaml"
    shutil.copy(ROOT / "stacks" / "Pulumi.prod.yaml", path)
    return path


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    assert len(before.splitlines()) == len(after.splitlines())
    return [(b, a) for b, a in zip(before.splitlines(), after.splitlines(), strict=True) if b != a]


def assert_comments_kept(path: Path) -> None:
    text = path.read_text()
    for comment in COMMENTS:
        assert comment in text


def assert_refused_unchanged(path: Path, before: str) -> None:
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no scratch file left behind


def test_pin_release_changes_only_the_release_lines(prod):
    before = prod.read_text()
    pin_release(prod, "chat", "8", prompt_version="chat-2026-10-01", feature_view="user_context:v1")
    release = stack_config.load_file(prod).models[0].release
    assert release.version == "8"
    assert (release.prompt_version, release.feature_view) == ("chat-2026-10-01", "user_context:v1")
    assert changed_lines(before, prod.read_text()) == [
        ('        version: "9"', '        version: "8"'),  # the quoting the file had
        ("        promptVersion: chat-2026-11-01", "        promptVersion: chat-2026-10-01"),
        ("        featureView: user_context:v2", "        featureView: user_context:v1")]
    assert_comments_kept(prod)


def test_pin_release_leaves_unnamed_parts_alone_and_adds_missing_ones_in_schema_order(prod):
    prod.write_text(prod.read_text().replace("        featureView: user_context:v2\n        retrievalIndex: docs\n"
                                             "      slo:", "        retrievalIndex: docs\n      slo:"))
    pin_release(prod, "chat-small", "2", feature_view="user_context:v1")
    release = stack_config.load_file(prod).models[1].release
    assert release.version == "2"
    assert (release.prompt_version, release.feature_view) == ("chat-2026-11-01", "user_context:v1")
    assert ('      release:\n        version: "2"\n        promptVersion: chat-2026-11-01\n'
            '        featureView: user_context:v1\n        retrievalIndex: docs\n') in prod.read_text()


def test_set_canary_weight(prod):
    before = prod.read_text()
    set_canary_weight(prod, "chat", 10)
    assert stack_config.load_file(prod).models[0].active_canary.weight == 10
    assert changed_lines(before, prod.read_text()) == [("        weight: 0", "        weight: 10")]
    assert_comments_kept(prod)


def test_canary_weight_zero_on_a_model_without_a_canary_is_nothing_to_do(prod):
    before = prod.read_text()
    set_canary_weight(prod, "chat-small", 0)
    assert prod.read_text() == before


def test_a_canary_weight_without_a_canary_is_refused(prod):
    before = prod.read_text()
    with pytest.raises(StackFileError) as refused:
        set_canary_weight(prod, "chat-small", 5)
    assert str(prod) in str(refused.value) and "'chat-small' has no canary" in str(refused.value)
    assert_refused_unchanged(prod, before)


def test_set_active_region_pins_and_none_removes_the_pin(prod):
    before = prod.read_text()
    set_active_region(prod, "us-west-2")
    assert stack_config.load_file(prod).active_region == "us-west-2"
    assert "    activeRegion: us-west-2\n" in prod.read_text()
    assert_comments_kept(prod)  # the comment above llmops:policy stays above it, not above the new key
    set_active_region(prod, None)
    assert stack_config.load_file(prod).active_region == "us-east-1"
    assert prod.read_text() == before
    set_active_region(prod, None)  # no pin: nothing to remove
    assert prod.read_text() == before


def test_set_active_region_without_a_failover_section_is_refused(tmp_path):
    path = tmp_path / "Pulumi.dev.yaml"
    shutil.copy(ROOT / "stacks" / "Pulumi.dev.yaml", path)
    before = path.read_text()
    with pytest.raises(StackFileError, match=f"{path}: llmops:failover: no such section"):
        set_active_region(path, "us-west-2")
    assert_refused_unchanged(path, before)
    set_active_region(path, None)
    assert path.read_text() == before


@pytest.mark.parametrize("edit", [
    lambda path: pin_release(path, "gpt", "2"),
    lambda path: set_canary_weight(path, "gpt", 0),
    lambda path: edit_stack_file(path, canary_weight_edit("chat", 0), release_edit("gpt", "2")),
], ids=["pin_release", "set_canary_weight", "edit_stack_file"])
def test_an_unknown_model_is_refused_naming_the_file_and_the_model(prod, edit):
    before = prod.read_text()
    with pytest.raises(StackFileError) as refused:
        edit(prod)
    message = str(refused.value)
    assert message.startswith(f"{prod}: llmops:models: no model named 'gpt'") and "chat, chat-small" in message
    assert "unchanged" in message
    assert_refused_unchanged(prod, before)


@pytest.mark.parametrize(("edit", "key"), [
    (lambda path: set_canary_weight(path, "chat", 120),
     "llmops:models[0].canary.weight = 120: expected a value <= 100"),
    (lambda path: pin_release(path, "chat", "10"), "llmops:models[0].canary.release"),  # the canary's own release
    (lambda path: pin_release(path, "chat", "v9"), 'llmops:models[0].release.version = "v9"'),
    (lambda path: set_active_region(path, "eu-west-1"), 'llmops:failover.activeRegion = "eu-west-1"'),
], ids=["weight above 100", "stable equals canary", "not a version", "not a region of the stack"])
def test_a_change_that_makes_the_config_invalid_leaves_the_file_unchanged(prod, edit, key):
    before = prod.read_text()
    with pytest.raises(stack_config.ConfigError) as refused:
        edit(prod)
    message = str(refused.value)
    assert message.startswith(f"{prod}: the stack config after the change is invalid; the file is unchanged")
    assert f"{prod}: {key}" in message  # the real file, not the scratch copy that was validated
    assert ".tmp" not in message
    assert_refused_unchanged(prod, before)


def test_edits_combine_into_one_validated_write(prod):
    edit_stack_file(prod, release_edit("chat", "8"), canary_weight_edit("chat", 10))
    chat = stack_config.load_file(prod).models[0]
    assert (chat.release.version, chat.canary.weight) == ("8", 10)


def test_a_promoted_canary_becomes_the_release_and_its_section_goes(prod):
    before = prod.read_text()
    edit_stack_file(prod, release_edit("chat", "10", "chat-2026-11-01", "user_context:v2", "docs"),
                    canary_removal_edit("chat"))
    chat = stack_config.load_file(prod).models[0]
    assert (chat.release.version, chat.release.retrieval_index, chat.canary) == ("10", "docs", None)
    after = prod.read_text()
    assert "canary:" not in after.split("name: chat-small")[0]
    # the rest stays as it was, the rollout policy's comment included
    assert len(before.splitlines()) - len(after.splitlines()) == 8
    assert "      rollout:                    # in prod the controller rolls back and pauses on its own" in after
    edit_stack_file(prod, canary_removal_edit("chat"))  # nothing left to remove
    assert prod.read_text() == after
