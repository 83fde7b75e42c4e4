"""A drill's bad value is refused when the arguments are parsed: exit 2 naming the option and what was expected,
before any server starts and with no report written -- not a traceback half a minute later, when Prometheus
refuses the rule or the world never sees a request (as `--for abc` and `--rate 0` did)."""

from __future__ import annotations

import pytest

from llmops.cli import main


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    return path


@pytest.mark.parametrize("argv,expected", [
    (["failover", "--timeout", "-1"], "argument --timeout: '-1': expected seconds, a number above 0"),
    (["reindex", "--timeout", "nan"], "argument --timeout: 'nan': expected seconds, a number above 0"),
    (["shadow", "--rate", "0"], "argument --rate: '0': expected requests per second, above 0 and at most 10000"),
    (["canary", "--scenario", "healthy", "--rate", "1e9"], "argument --rate: '1e9': expected requests per second"),
    (["canary", "--scenario", "healthy", "--inject-after", "-2"],
     "argument --inject-after: '-2': expected seconds, a number >= 0"),
    (["drift", "--share", "1.5"], "argument --share: '1.5': expected a share, above 0 and at most 1"),
    (["pii-incident", "--for", "abc"], "argument --for: 'abc': expected a Prometheus duration such as 5s, 2m or 1m30s"),
    (["reindex", "--alert-for", "2 s"], "argument --alert-for: '2 s': expected a Prometheus duration"),
    (["reindex", "--documents", "0"], "argument --documents: '0': expected a whole number, at least 1"),
    (["reindex", "--changed", "0"], "argument --changed: '0': expected a share, above 0 and at most 1"),
    (["shadow", "--holds", "x"], "argument --holds: 'x': expected a whole number, at least 1"),
    (["failover", "--alert-for", "-3"], "argument --alert-for: '-3': expected seconds, a number >= 0"),
])
def test_a_bad_value_is_refused_naming_the_option(argv, expected, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["drill", *argv])
    assert refused.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("drill", [["rollback"], ["canary", "--scenario", "healthy"], ["drift"], ["failover"],
                                   ["reindex"], ["pii-incident"], ["shadow"], ["all"]])
def test_a_report_dir_that_is_a_file_or_under_one_is_refused(drill, a_file, capsys):
    for where, expected in ((a_file, "is a file; expected a directory for the reports"),
                            (a_file / "reports", f"has a file on its way: {a_file}; expected a directory")):
        with pytest.raises(SystemExit) as refused:
            main(["drill", *drill, "--report-dir", str(where)])
        assert refused.value.code == 2
        assert f"argument --report-dir: '{where}' {expected}" in capsys.readouterr().err
    assert a_file.read_text() == "not a directory"
