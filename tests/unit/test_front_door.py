"""The README, the Makefile and CI cannot drift apart."""

import re
import subprocess

from streams.config import ENV_DOC, PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
MAKEFILE = (PROJECT_ROOT / "Makefile").read_text()
CI = (PROJECT_ROOT / ".ci" / "run").read_text()


def _targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z_-]+):", MAKEFILE, re.M))


def test_every_make_command_in_the_readme_is_a_makefile_target():
    used = set(re.findall(r"\bmake ([a-z][a-z-]*)", README))
    assert {"demo", "test"} <= used
    assert used <= _targets(), used - _targets()


def test_ci_runs_the_readme_test_command():
    assert re.search(r"^make test$", CI, re.M)
    assert "make test" in README


def test_every_environment_variable_is_documented_in_the_readme():
    missing = [name for name in ENV_DOC if f"`{name}`" not in README]
    assert not missing, missing


def test_make_help_lists_every_target():
    out = subprocess.run(["make", "-s", "help"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, check=True).stdout
    # The target is the first word after "make" at the start of each line; a
    # description may itself mention `make test`.
    listed = set(re.findall(r"^\s*make (\S+)", out, re.M))
    assert listed == _targets() - {"$(STAMP)"} - {".PHONY", ".DEFAULT_GOAL"}, listed
