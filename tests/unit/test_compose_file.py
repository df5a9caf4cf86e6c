"""docker-compose.yml is a valid Compose file and the image it builds installs the wheel.

Docker is not installed on the development machines, so ``docker compose config``
cannot run here. Instead: variables are interpolated as Compose does
(``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``), YAML merge keys resolved,
and the result validated against the Compose Specification JSON schema
(tests/fixtures/compose/README.md says where it comes from); then what the
schema cannot see is checked: the Dockerfile exists and installs the wheel,
ports publish on loopback, wildcard binds carry a token and an advertised URL,
the broker image matches the version the local broker script pins.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from streams.config import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
SCHEMA = PROJECT_ROOT / "tests" / "fixtures" / "compose" / "compose_spec.json"
POM = PROJECT_ROOT / "ops" / "kafka" / "pom.xml"
TOKEN = "t" * 32

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$\$")


class InterpolationError(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of every string value (keys are not interpolated)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        got = env.get(name)
        unset = got is None or (op is not None and op.startswith(":") and got == "")
        if op in ("-", ":-"):
            return arg if unset else got  # type: ignore[return-value]
        if op in ("?", ":?"):
            if unset:
                raise InterpolationError(f"{name}: {arg}")
            return got  # type: ignore[return-value]
        return got or ""

    return _VAR.sub(sub, value)


def load(env: dict[str, str]) -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())  # resolves the << merge keys
    return dict(interpolate(doc, env))


def _env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_the_compose_file_validates_against_the_compose_spec_schema() -> None:
    doc = load({"TWINLEDGER_HTTP_TOKEN": TOKEN})
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    # The checker itself catches a broken file.
    bad = json.loads(json.dumps(doc))
    bad["services"]["worker"]["depends_on"]["topics"]["condition"] = "service_done"
    bad["services"]["sink"]["ports"] = {"8765": "8765"}
    assert len(list(validator.iter_errors(bad))) >= 2


def test_the_stack_refuses_to_start_without_a_token() -> None:
    with pytest.raises(InterpolationError, match="TWINLEDGER_HTTP_TOKEN"):
        load({})
    with pytest.raises(InterpolationError):
        load({"TWINLEDGER_HTTP_TOKEN": ""})


def test_the_app_image_is_built_from_the_wheel_not_the_source_tree() -> None:
    doc = load({"TWINLEDGER_HTTP_TOKEN": TOKEN})
    builds = {json.dumps(s["build"], sort_keys=True) for s in doc["services"].values()
              if "build" in s}
    assert len(builds) == 1
    build = json.loads(builds.pop())
    dockerfile = PROJECT_ROOT / build["context"] / build["dockerfile"]
    assert dockerfile.is_file(), dockerfile
    text = dockerfile.read_text()
    assert re.search(r"pip wheel .*-w /wheels", text)
    assert re.search(r"pip install [^\n]*/wheels/twinledger-\*\.whl", text)
    final = text.rsplit("\nFROM ", 1)[1]  # the runtime stage
    assert "COPY --from=build /wheels" in final
    assert not re.search(r"^COPY (\.|streams|sinks)\b", final, re.M), "source in the image"
    for service in doc["services"].values():
        assert "TWINLEDGER_TOPOLOGY" not in _env_of(service)  # the packaged default


def test_ports_publish_on_loopback_and_wildcard_binds_carry_a_token() -> None:
    doc = load({"TWINLEDGER_HTTP_TOKEN": TOKEN})
    for name, service in doc["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        env = _env_of(service)
        for key, value in env.items():
            if key.endswith("_HOST") and value in ("0.0.0.0", "::"):  # noqa: S104
                assert len(env.get("TWINLEDGER_HTTP_TOKEN", "")) >= 16, (name, key)
        if env.get("TWINLEDGER_WORKER_WEB_HOST") in ("0.0.0.0", "::"):  # noqa: S104
            url = env.get("TWINLEDGER_WORKER_ADVERTISED_URL", "")
            assert url.startswith("http://") and "0.0.0.0" not in url, (name, url)


def test_the_broker_image_is_the_version_the_local_script_pins() -> None:
    pinned = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    assert pinned
    doc = load({"TWINLEDGER_HTTP_TOKEN": TOKEN})
    assert doc["services"]["kafka"]["image"] == f"apache/kafka:{pinned.group(1)}"
    assert pinned.group(1) in COMPOSE.read_text().split("name:", 1)[0]  # the header says so


def test_interpolation_follows_compose() -> None:
    env = {"A": "x", "E": ""}
    assert interpolate("${A}-${B:-d}-${E:-d}-${E-d}-$$", env) == "x-d-d--$"
    with pytest.raises(InterpolationError):
        interpolate("${E:?no}", env)
    assert interpolate("${E?no}", env) == ""
    assert Path(SCHEMA).is_file()
