"""Static checks of docker-compose.yml and the monitoring config it mounts (no Docker here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stream.config import ENV_PREFIX, Settings

ROOT = Path(__file__).parents[2]
COMPOSE_SCHEMA = ROOT / "tests/fixtures/schemas/compose-spec.json"
OWN_IMAGES = ("demandstream/worker", "demandstream/trainer")
# Settings whose defaults point at localhost: a container must set them explicitly.
REQUIRED_IN_CONTAINERS = {"kafka_bootstrap", "redis_url", "model_registry", "redis_password"}
APP_SERVICES = ("worker", "insights", "trainer")
ONE_SHOT = {"topics", "trainer"}
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
SHELL_VAR = re.compile(r"\$\$\{?(DEMANDSTREAM_[A-Z0-9_]+)")

SETTING_ENV_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    doc = yaml.safe_load(compose_text)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of `environment`"
    return {str(k): str(v) for k, v in env.items()}


def _fill_interpolations(value: str) -> str:
    """What Compose would substitute, with a dummy for variables read from `.env`."""
    return INTERPOLATION.sub(lambda m: "dummy-secret-value", value)


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    # The vendored schema says draft 2019-09 (with a trailing '#' jsonschema does not recognise).
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_would_catch_a_typo(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["restrat"] = "always"
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    assert not jsonschema.Draft201909Validator(schema).is_valid(broken)


def test_expected_services_and_profiles(services: dict[str, dict[str, Any]]) -> None:
    core = {"kafka", "topics", "redis", "worker", "insights"}
    assert core <= services.keys()
    assert all("profiles" not in services[name] for name in core)
    assert services["trainer"]["profiles"] == ["train"]
    for name in ("prometheus", "grafana", "kafka-exporter"):
        assert services[name]["profiles"] == ["monitoring"]


def test_demandstream_variables_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        used = {k for k in _environment(service) if k.startswith(ENV_PREFIX)}
        assert used <= SETTING_ENV_NAMES, (name, used - SETTING_ENV_NAMES)


def test_app_services_build_valid_settings_from_their_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in APP_SERVICES:
        env = _environment(services[name])
        set_fields = {k.removeprefix(ENV_PREFIX).lower() for k in env if k.startswith(ENV_PREFIX)}
        assert set_fields >= REQUIRED_IN_CONTAINERS, (name, REQUIRED_IN_CONTAINERS - set_fields)
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, _fill_interpolations(value))
            settings = Settings(_env_file=None)
        assert str(settings.model_registry) == "/models"
        assert settings.kafka_bootstrap == "kafka:9092"


def test_shell_scripts_only_read_variables_their_service_sets(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        script = json.dumps(service.get("command", "")) + json.dumps(service.get("entrypoint", ""))
        read = set(SHELL_VAR.findall(script))
        assert read <= _environment(service).keys(), (name, read - _environment(service).keys())


def test_topic_creation_uses_kafka_topics_with_the_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    topics = services["topics"]
    script = "\n".join(topics["command"])
    assert "/opt/kafka/bin/kafka-topics.sh" in script and "--if-not-exists" in script
    for var in (
        "TOPIC_EVENTS",
        "TOPIC_PREDICTIONS",
        "TOPIC_DLQ",
        "TOPIC_PARTITIONS",
        "TOPIC_REPLICATION",
        "TOPIC_RETENTION_MS",
    ):
        assert f"$$DEMANDSTREAM_{var}" in script
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert (
        services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    )


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    from importlib.metadata import version

    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), (name, image)
        if repo in OWN_IMAGES:
            assert tag == version("demandstream"), (name, image)
    assert services["kafka"]["image"].startswith("apache/kafka:")


def test_health_restart_and_limits(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("restart") in (
            {"no"} if name in ONE_SHOT else {"unless-stopped", "always"}
        ), name
        limits = service["deploy"]["resources"]["limits"]
        assert {"cpus", "memory"} <= limits.keys(), name
        if name not in ONE_SHOT and name != "kafka-exporter":  # its image has no shell or client
            assert service["healthcheck"]["test"], name


def test_kraft_kafka_and_persistent_redis(services: dict[str, dict[str, Any]]) -> None:
    kafka_env = _environment(services["kafka"])
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka_env
    redis_args = services["redis"]["command"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"
    assert any(v.startswith("redis-data:") for v in services["redis"]["volumes"])


def test_workers_scale_out_and_share_the_registry_read_only(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2
    # Fixed names or host ports would stop replicas from starting side by side.
    assert "container_name" not in worker and "ports" not in worker
    assert "models:/models:ro" in worker["volumes"]
    assert "models:/models" in services["trainer"]["volumes"]
    assert worker["command"] == ["worker"]
    assert services["insights"]["command"] == ["insights", "serve"]
    trainer = services["trainer"]["command"]
    assert trainer[0] == "train" and trainer[trainer.index("--registry") + 1] == "/models"


def test_no_secret_is_written_in_the_file(
    services: dict[str, dict[str, Any]], compose_text: str
) -> None:
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|HMAC|AUTH")
    for name, service in services.items():
        for key, value in _environment(service).items():
            if secretish.search(key):
                assert INTERPOLATION.fullmatch(value), (name, key)
    requirepass = services["redis"]["command"][
        services["redis"]["command"].index("--requirepass") + 1
    ]
    assert INTERPOLATION.fullmatch(requirepass)


def test_every_interpolated_variable_is_in_the_env_example(compose_text: str) -> None:
    example = (ROOT / "deploy/compose.env.example").read_text(encoding="utf-8")
    documented = {
        line.split("=", 1)[0]
        for line in example.splitlines()
        if "=" in line and not line.startswith("#")
    }
    used = set(INTERPOLATION.findall(compose_text))
    assert used and used <= documented, used - documented


def test_mounted_files_and_build_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name


def test_prometheus_scrapes_every_worker_replica_on_the_http_port(
    services: dict[str, dict[str, Any]],
) -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    dns = jobs["demandstream-worker"]["dns_sd_configs"][0]
    assert dns["names"] == ["worker"] and dns["type"] == "A"
    assert str(dns["port"]) == _environment(services["worker"])["DEMANDSTREAM_HTTP_PORT"]
    assert jobs["demandstream-worker"]["metrics_path"] == "/metrics"


def test_grafana_dashboard_is_provisioned_against_the_provisioned_datasource() -> None:
    grafana = ROOT / "deploy/grafana"
    datasources = yaml.safe_load(
        (grafana / "provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    uids = {ds["uid"] for ds in datasources["datasources"]}
    provider = yaml.safe_load(
        (grafana / "provisioning/dashboards/demandstream.yml").read_text(encoding="utf-8")
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((grafana / "dashboards/demandstream.json").read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["panels"]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert all(panel["datasource"]["uid"] in uids for panel in dashboard["panels"])
    assert any("kafka_consumergroup_lag" in e for e in exprs)
    assert sum("demandstream_" in e for e in exprs) >= 5
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
