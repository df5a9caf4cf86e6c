"""examples/venues/: one raw sample per venue, as the README and `normalize --help` use it."""

from __future__ import annotations

import io

import pytest

from streams.config import PROJECT_ROOT
from streams.foldfile import fold_lines
from streams.gateways import VENUES, OrderMemory
from streams.gateways.cli import normalize_lines
from streams.ledger import load_ledger_config

EXAMPLES = PROJECT_ROOT / "examples" / "venues"


@pytest.mark.parametrize("venue", VENUES)
def test_each_venue_sample_normalizes_and_folds_without_a_rejection(venue: str) -> None:
    path = EXAMPLES / f"{venue}.jsonl"
    out, err = io.StringIO(), io.StringIO()
    with path.open("rb") as fh:
        written, rejected = normalize_lines(venue, fh, OrderMemory(), f"{venue}-1", out, err,
                                            str(path))
    assert rejected == 0 and "rejected" not in err.getvalue(), err.getvalue()
    assert written >= 4
    document = fold_lines(out.getvalue().splitlines(), load_ledger_config(None))
    assert document["rejected"] == []
    assert list(document["accounts"]) == [f"{venue}-1"]


def test_the_readme_shows_every_venue_sample() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    for venue in VENUES:
        assert f"examples/venues/{venue}.jsonl" in readme, venue
