"""The read-only endpoint's guard: one SELECT/WITH, nothing that writes or reaches out."""

from __future__ import annotations

import pytest

from sinks.exceptions import UnsafeQuery
from sinks.sqlguard import check_select, wrap_readonly

ALLOWED = [
    "SELECT 1",
    "select count() from venue_events;",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    "SELECT * FROM account_snapshots WHERE account_id = {account:String}",
    "SELECT 'DROP TABLE x; INSERT INTO y' AS text",          # keywords inside a literal
    "SELECT `format` FROM t",                                 # quoted identifier
    "SELECT name FROM system.columns WHERE table = 'trade_events'",
    "SELECT replaceAll(event_id, ':', '-') FROM dead_letters",
]

REFUSED = [
    ("", "empty"),
    ("DROP TABLE venue_events", "only SELECT"),
    ("INSERT INTO venue_events SELECT * FROM venue_events", "only SELECT"),
    ("SELECT 1; DROP TABLE venue_events", "one statement"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO"),
    ("SELECT 1 FORMAT CSV", "FORMAT"),
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
    ("SELECT * FROM file('/etc/passwd', LineAsString)", "file"),
    ("SELECT * FROM url('http://x', CSV)", "url"),
    ("SELECT * FROM remote('h', system.one)", "remote"),
    ("SELECT * FROM s3 ('https://b/k')", "s3"),
    ("SELECT * FROM executable('x', TSV, 'a String')", "executable"),
    ("SELECT 1 -- comment", "comments"),
    ("SELECT 1 /* c */", "comments"),
    ("SELECT 'unterminated", "unterminated"),
    ("ALTER TABLE t DELETE WHERE 1", "only SELECT"),
    ("SELECT {x}", "braces"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed(sql: str) -> None:
    assert check_select(sql) == sql.strip().rstrip(";").rstrip()


@pytest.mark.parametrize(("sql", "why"), REFUSED)
def test_refused(sql: str, why: str) -> None:
    with pytest.raises(UnsafeQuery, match=why):
        check_select(sql)


def test_wrapped_as_subquery_so_outer_settings_apply() -> None:
    assert wrap_readonly("SELECT 1;") == "SELECT * FROM (SELECT 1)"
