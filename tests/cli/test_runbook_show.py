"""`llmops runbook show NAME`: the page formatted on a terminal (a real pseudo-terminal here), the Markdown itself,
byte for byte, when stdout is a pipe or a file."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.cli_fork import run_llmops

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "runbooks" / "pages"
SGR = re.compile(r"\x1b\[([0-9;]*)m")
# Whatever a terminal variable could change: each test says what it sets.
TERMINAL_VARIABLES = ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS", "LINES", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
                      "CLICOLOR_FORCE")


def on_terminal(*args: str, columns: int = 100, **variables: str) -> tuple[int, str]:
    """`llmops runbook show ARGS` with stdout on a pseudo-terminal COLUMNS wide; what the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in TERMINAL_VARIABLES}
    env.update({"TERM": "xterm-256color", **variables})
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "runbook", "show", *args], cwd=ROOT, env=env,
                               stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    received = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side of the terminal closed
            break
        if not chunk:
            break
        received.append(chunk)
    os.close(master)
    _, stderr = process.communicate(timeout=120)
    assert stderr == b"", stderr.decode()
    return process.returncode, b"".join(received).decode().replace("\r\n", "\n")  # the terminal's own newlines


def plain(text: str) -> str:
    return SGR.sub("", text)


def colours(text: str) -> set[str]:
    """The colour parameters among the terminal's SGR sequences (30-38, 40-48, 90-97, 100-107); bold or underline
    are not colour."""
    found = set()
    for params in SGR.findall(text):
        found |= {p for p in params.split(";") if p and (30 <= int(p) <= 48 or 90 <= int(p) <= 107) and int(p) != 39}
    return found


def code_lines(markdown: str) -> list[str]:
    """Every line inside the page's fenced code blocks."""
    lines, inside = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside and line.strip():
            lines.append(line.rstrip())
    return lines


@pytest.mark.parametrize("page", sorted(PAGES.glob("*.md")), ids=lambda path: path.stem)
def test_into_a_file_it_prints_the_markdown_itself(page):
    result = run_llmops(["runbook", "show", page.stem], env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout == page.read_text()


def test_into_a_pipe_it_prints_the_markdown_itself():
    env = {key: value for key, value in os.environ.items() if key not in TERMINAL_VARIABLES}
    result = subprocess.run([sys.executable, "-m", "llmops.cli", "runbook", "show", "rollback"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (PAGES / "rollback.md").read_bytes()


def test_on_a_terminal_it_is_formatted_in_colour_and_its_commands_stay_whole():
    markdown = (PAGES / "pii-incident.md").read_text()
    code, shown = on_terminal("pii-incident", columns=60)
    assert code == 0
    assert colours(shown), "expected colour on a terminal"
    text = plain(shown)
    assert "<!--" not in text and "## " not in text and "**" not in text  # Markdown's marks are rendered, not shown
    assert "Run it" in text
    lines = set(text.splitlines())
    commands = code_lines(markdown)
    assert any(len(c) > 60 for c in commands)  # wider than the terminal, and still:
    missing = [c for c in commands if c not in lines]
    assert missing == [], "a command wrapped, cropped or indented: a copy of it would not run"


def test_no_color_is_respected_on_a_terminal():
    code, shown = on_terminal("rollback", NO_COLOR="1")
    assert code == 0
    assert colours(shown) == set()
    assert "## " not in plain(shown) and "Roll back a model release" in plain(shown)  # still formatted


def test_raw_prints_the_markdown_on_a_terminal_too():
    code, shown = on_terminal("rollback", "--raw")
    assert code == 0
    assert shown == (PAGES / "rollback.md").read_text()


def test_an_unknown_runbook_is_bad_usage():
    result = run_llmops(["runbook", "show", "nope"], env=dict(os.environ))
    assert result.returncode == 2 and "no runbook 'nope'" in result.stderr
