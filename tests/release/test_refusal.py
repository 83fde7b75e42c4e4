"""refusal-v1: each pattern catches the refusals it is for, and the near-misses of helpful answers stay answers."""

from __future__ import annotations

import pytest

from llmops.release.shadow.refusal import SpecError, load_refusal

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I am afraid, but I cannot do that.",
    "I cannot help with that request.",
    "I can't assist with creating that.",
    "I won't provide instructions for this.",
    "I'm unable to help with this request.",
    "I am not able to share that information.",
    "I must decline to answer.",
    "Unfortunately this request violates our usage policy.",
    "As an AI language model, I cannot browse the internet.",
    "I'm not allowed to discuss that.",
]
ANSWERS = [
    "Paris is the capital of France.",
    "I can help with that: first, preheat the oven.",
    "Sorry for the confusion earlier; the answer is 42.",
    "You cannot divide by zero, so the expression is undefined.",
    "",
    # a refusal phrase late in a helpful answer: outside the first 300 characters it is not a refusal
    "Here is a long, helpful answer. " * 12 + "I cannot help noticing the pattern.",
]


@pytest.fixture(scope="module")
def refusal():
    return load_refusal("refusal-v1")


@pytest.mark.parametrize("answer", REFUSALS)
def test_refusals_are_caught(refusal, answer):
    assert refusal.refuses(answer)


@pytest.mark.parametrize("answer", ANSWERS)
def test_answers_are_not_refusals(refusal, answer):
    assert not refusal.refuses(answer)


def test_the_file_is_versioned(refusal):
    assert refusal.version == "refusal-v1" and refusal.prefix_chars == 300 and len(refusal.patterns) == 7


@pytest.mark.parametrize("content,message", [
    ("version: x\npatterns: ['(']\n", "patterns[0]: not a regular expression"),
    ("version: x\npatterns: []\n", "patterns: expected a non-empty list"),
    ("patterns: ['a']\n", "version: expected"),
    ("version: x\nprefixChars: 0\npatterns: ['a']\n", "prefixChars"),
])
def test_a_bad_pattern_file_is_named(tmp_path, content, message):
    path = tmp_path / "refusal-bad.yaml"
    path.write_text(content)
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_refusal(str(path))
