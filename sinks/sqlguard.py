"""The guard in front of ``POST /query``: one read-only SELECT/WITH statement, nothing else.

Owns: deciding whether a text may be run on the sink's read-only endpoint
and wrapping it so the engine enforces ``readonly = 1`` as well. Must not
touch: execution (``sinks.backend``) or HTTP (``sinks.http``).

Two layers, because chDB runs inside the sink process with its file system:
the text is checked here (single statement, starts with SELECT or WITH, no
statement keywords, no SETTINGS/FORMAT/INTO, no table functions that reach
files, URLs or other servers), then run as ``SELECT * FROM (<text>)`` with
``readonly = 1`` so ClickHouse refuses writes and setting changes itself.
The check looks at the text with string literals and quoted identifiers
blanked out, so a literal like ``'DROP'`` is fine and a keyword is found
wherever it is.
"""

from __future__ import annotations

import re

from sinks.exceptions import UnsafeQuery

MAX_SQL = 20_000

# Statements cannot start a query here (the first word must be SELECT/WITH); these are
# the words that would still change what a SELECT does or writes.
_FORBIDDEN_WORDS = {
    "insert", "alter", "create", "drop", "truncate", "rename", "attach", "detach", "optimize",
    "kill", "grant", "revoke", "set", "settings", "format", "into", "outfile", "backup",
    "restore", "undrop",
}
# Table functions and engines that read outside the sink's own tables.
_FORBIDDEN_CALLS = {
    "file", "url", "s3", "s3cluster", "gcs", "hdfs", "hdfscluster", "remote", "remotesecure",
    "cluster", "clusterallreplicas", "mysql", "postgresql", "sqlite", "mongodb", "redis",
    "jdbc", "odbc", "executable", "executablepool", "python", "input", "azureblobstorage",
    "azureblobstoragecluster", "iceberg", "icebergs3", "deltalake", "hudi", "urlcluster",
    "filecluster", "generaterandom", "fuzzjson",
}

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _blank_literals(sql: str) -> str:
    """``sql`` with the insides of '...', "..." and `...` replaced by spaces."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote inside the literal
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                raise UnsafeQuery("unterminated quoted text")
            out.append(ch + " " * (j - i - 1) + ch)
            i = j + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def check_select(sql: str) -> str:
    """The statement without a trailing ``;`` if it is one safe SELECT/WITH; raise otherwise."""
    if not isinstance(sql, str) or not sql.strip():
        raise UnsafeQuery("empty query")
    if len(sql) > MAX_SQL:
        raise UnsafeQuery(f"query longer than {MAX_SQL} characters")
    text = sql.strip()
    bare = _blank_literals(text)
    if bare.endswith(";"):
        text, bare = text[:-1].rstrip(), bare[:-1].rstrip()
    if ";" in bare:
        raise UnsafeQuery("only one statement is allowed")
    if "--" in bare or "/*" in bare or "#" in bare:
        raise UnsafeQuery("comments are not allowed")
    if "{" in bare:
        # Parameters are bound by the endpoint's "params", never typed into the text
        # by the engine's substitution from elsewhere; braces outside literals are refused.
        if not re.fullmatch(r"[^{}]*(\{[A-Za-z_][A-Za-z0-9_]*:[^{}]+\}[^{}]*)*", bare):
            raise UnsafeQuery("braces are only allowed as {name:Type} parameters")
    words = [w.lower() for w in _WORD.findall(bare)]
    if not words or words[0] not in ("select", "with"):
        raise UnsafeQuery("only SELECT or WITH statements are allowed")
    bad = sorted(set(words) & _FORBIDDEN_WORDS)
    if bad:
        raise UnsafeQuery(f"not allowed in a read-only query: {', '.join(bad).upper()}")
    calls = sorted({c.lower() for c in _CALL.findall(bare)} & _FORBIDDEN_CALLS)
    if calls:
        raise UnsafeQuery(f"table functions not allowed here: {', '.join(calls)}")
    return text


def wrap_readonly(sql: str) -> str:
    """The checked statement as a subquery, so settings the caller adds apply around it."""
    return f"SELECT * FROM ({check_select(sql)})"  # noqa: S608 - the text passed check_select


#: Settings every endpoint query runs with.
READONLY_SETTINGS = {"readonly": 1, "max_result_rows": 100_000, "max_execution_time": 30}
