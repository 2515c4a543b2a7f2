"""deploy/: the compose file parses and configures only settings that exist; its commands, the Dockerfile's and
the systemd units' ExecStart lines are valid invocations of the CLI; the example files cover what they use."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from mistral_gateway.cli import build_parser
from mistral_gateway.config import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SYSTEMD = DEPLOY / "systemd"


def setting_names(env: dict[str, Any] | list[str]) -> set[str]:
    keys = [item.split("=", 1)[0] for item in env] if isinstance(env, list) else list(env)
    return {k[len(ENV_PREFIX):].lower().split("__")[0] for k in keys if k.startswith(ENV_PREFIX)}


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def cli(argv: list[str]) -> Any:
    """The CLI's own parser on ``argv`` (argparse exits on anything it would refuse)."""
    assert Path(argv[0]).name == "mistral-gateway", argv
    return build_parser().parse_args(argv[1:])


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_has_the_whole_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"gateway", "worker", "postgres", "redis", "s3"} <= set(services)
    assert set(compose["volumes"]) >= {"gateway-data", "postgres-data", "redis-data", "s3-data"}
    assert "/ready" in " ".join(services["gateway"]["healthcheck"]["test"])
    assert services["worker"]["depends_on"]["gateway"]["condition"] == "service_healthy"  # migrated first


def test_compose_names_only_settings_that_exist(compose: dict[str, Any]) -> None:
    used: set[str] = set()
    for name in ("gateway", "worker"):
        used |= setting_names(compose["services"][name]["environment"])
    assert used - set(Settings.model_fields) == set()
    assert {"database_url", "redis_url", "blob_store", "s3_bucket", "s3_endpoint_url", "s3_access_key_id",
            "s3_secret_access_key", "signing_secret", "secrets_key", "metrics_token", "log_format"} <= used


def test_compose_commands_are_cli_invocations(compose: dict[str, Any]) -> None:
    serve = cli(compose["services"]["gateway"]["command"])
    assert (serve.command, serve.workers, serve.no_worker, serve.port) == ("serve", 4, True, 8080)
    assert serve.host == "0.0.0.0"  # noqa: S104 - inside its container, reached through the published port
    assert cli(compose["services"]["worker"]["command"]).command == "worker"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert cli(cmd).command == "serve"


def test_compose_variables_are_in_the_example_env(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    wanted = set(re.findall(r"\$\{(\w+)", text))
    assert wanted and wanted <= set(env_file(DEPLOY / "env.example"))


@pytest.mark.parametrize(("unit", "command"), [("mistral-gateway.service", "serve"),
                                               ("mistral-gateway-worker.service", "worker")])
def test_systemd_exec_start_is_a_cli_invocation(unit: str, command: str) -> None:
    text = (SYSTEMD / unit).read_text()
    starts = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]
    assert len(starts) == 1
    args = cli(shlex.split(starts[0]))
    assert args.command == command and args.workers >= 2
    assert "EnvironmentFile=/etc/mistral-gateway/gateway.env" in text


def test_systemd_environment_example_names_only_settings_that_exist() -> None:
    names = setting_names(list(env_file(SYSTEMD / "gateway.env.example")))
    assert names - set(Settings.model_fields) == set()
    assert {"database_url", "redis_url", "blob_store", "signing_secret", "metrics_token", "data_dir"} <= names
