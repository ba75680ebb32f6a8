"""Static checks of deploy/k8s: schemas, settings names, probes, autoscaling, secrets, pinning."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from stream.config import ENV_PREFIX, Settings

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy/k8s"
K8S_VERSION = "1.30.0"  # oldest Kubernetes release these manifests target
SECRET_TEMPLATE = "secret.example.yaml"
SETTING_ENV_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
SECRET_SETTINGS = {
    ENV_PREFIX + name.upper()
    for name, field in Settings.model_fields.items()
    if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
}
MANIFESTS = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]


def _all_documents() -> list[dict[str, Any]]:
    return [doc for name in MANIFESTS for doc in _documents(name)]


def _find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in _all_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, (kind, name)
    return matches[0]


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def _workloads() -> list[dict[str, Any]]:
    return [d for d in _all_documents() if d["kind"] in ("Deployment", "Job", "CronJob")]


@pytest.fixture(scope="module")
def config_data() -> dict[str, str]:
    data: dict[str, str] = _find("ConfigMap", "demandstream-config")["data"]
    return data


@pytest.fixture(scope="module")
def secret_data() -> dict[str, str]:
    data: dict[str, str] = _find("Secret", "demandstream-secrets")["stringData"]
    return data


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_matches_kubernetes_schemas(name: str) -> None:
    for doc in _documents(name):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schema_check_would_catch_a_misspelt_field() -> None:
    deployment = _find("Deployment", "demandstream-worker")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_applies_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == sorted(set(MANIFESTS) - {SECRET_TEMPLATE})


def test_config_and_secret_keys_are_real_settings(
    config_data: dict[str, str], secret_data: dict[str, str]
) -> None:
    assert set(config_data) <= SETTING_ENV_NAMES, set(config_data) - SETTING_ENV_NAMES
    assert set(secret_data) <= SETTING_ENV_NAMES, set(secret_data) - SETTING_ENV_NAMES
    for workload in _workloads():
        for container in _pod_spec(workload)["containers"]:
            names = {
                e["name"] for e in container.get("env", []) if e["name"].startswith(ENV_PREFIX)
            }
            assert names <= SETTING_ENV_NAMES, (workload["metadata"]["name"], names)


def test_secrets_stay_out_of_the_configmap(
    config_data: dict[str, str], secret_data: dict[str, str]
) -> None:
    assert SECRET_SETTINGS and not SECRET_SETTINGS & set(config_data)
    # Each secret the configuration needs (SASL, Redis auth, pseudonymisation) is provided.
    assert {
        "DEMANDSTREAM_KAFKA_SASL_PASSWORD",
        "DEMANDSTREAM_REDIS_PASSWORD",
        "DEMANDSTREAM_USER_HMAC_KEY",
    } <= set(secret_data)
    for doc in _documents(SECRET_TEMPLATE):
        assert all(value.startswith("REPLACE_ME") for value in doc["stringData"].values())


def test_configmap_and_secret_make_valid_settings(
    config_data: dict[str, str], secret_data: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {**config_data, **secret_data}.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.redis_url.startswith("rediss://")  # Redis over TLS
    assert str(settings.model_registry) == "/models"


def test_scripts_read_only_variables_the_pod_gets(
    config_data: dict[str, str], secret_data: dict[str, str]
) -> None:
    provided = set(config_data) | set(secret_data)
    job = _find("Job", "demandstream-topics")
    script = "\n".join(_pod_spec(job)["containers"][0]["args"])
    read = set(re.findall(r"\$\{?(DEMANDSTREAM_[A-Z0-9_]+)", script))
    assert read and read <= provided, read - provided
    assert "kafka-topics.sh" in script and "--if-not-exists" in script


def test_worker_probes_ports_and_volumes(config_data: dict[str, str]) -> None:
    worker = _find("Deployment", "demandstream-worker")
    pod = _pod_spec(worker)
    (container,) = pod["containers"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert str(port) == config_data["DEMANDSTREAM_HTTP_PORT"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["args"] == ["worker"]
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == config_data["DEMANDSTREAM_MODEL_REGISTRY"]
    assert mounts["models"]["readOnly"] is True
    refs = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
    assert refs == ["demandstream-config", "demandstream-secrets"]


def test_autoscaling_on_consumer_lag_stays_within_the_partitions(
    config_data: dict[str, str],
) -> None:
    hpa = _find("HorizontalPodAutoscaler", "demandstream-worker")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demandstream-worker",
    }
    assert (
        2
        <= hpa["spec"]["minReplicas"]
        <= hpa["spec"]["maxReplicas"]
        <= int(config_data["DEMANDSTREAM_TOPIC_PARTITIONS"])
    )
    (metric,) = hpa["spec"]["metrics"]
    labels = metric["external"]["metric"]["selector"]["matchLabels"]
    assert metric["external"]["metric"]["name"] == "kafka_consumergroup_lag"
    assert labels == {
        "consumergroup": config_data["DEMANDSTREAM_CONSUMER_GROUP"],
        "topic": config_data["DEMANDSTREAM_TOPIC_EVENTS"],
    }


def test_retraining_cronjob_writes_the_registry_the_workers_read(
    config_data: dict[str, str],
) -> None:
    cron = _find("CronJob", "demandstream-retrain")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _pod_spec(cron)
    (container,) = pod["containers"]
    assert container["image"].startswith("demandstream/trainer:")
    args = container["args"]
    assert (
        args[0] == "retrain"
        and args[args.index("--registry") + 1] == config_data["DEMANDSTREAM_MODEL_REGISTRY"]
    )
    claims = {
        v["name"]: v["persistentVolumeClaim"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    worker_claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in _pod_spec(_find("Deployment", "demandstream-worker"))["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims["models"]["claimName"] in worker_claims
    assert not claims["models"].get("readOnly", False)
    pvc = _find("PersistentVolumeClaim", claims["models"]["claimName"])
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_promote_shadow_cronjob_is_the_second_step_on_the_same_registry(
    config_data: dict[str, str],
) -> None:
    retrain = _pod_spec(_find("CronJob", "demandstream-retrain"))
    cron = _find("CronJob", "demandstream-promote-shadow")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _pod_spec(cron)
    (container,) = pod["containers"]
    args = container["args"]
    assert args[:2] == ["models", "promote-shadow"] and "--waiting-ok" in args
    assert args[args.index("--registry") + 1] == config_data["DEMANDSTREAM_MODEL_REGISTRY"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    retrain_claims = {
        v["persistentVolumeClaim"]["claimName"] for v in retrain["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims == retrain_claims


def test_images_are_pinned_and_ours_match_the_package_version() -> None:
    for workload in _workloads():
        for container in _pod_spec(workload)["containers"]:
            repo, _, tag = container["image"].rpartition(":")
            assert repo and tag and tag != "latest" and re.search(r"\d", tag), container["image"]
            if repo.startswith("demandstream/"):
                assert tag == version("demandstream")


def test_containers_run_unprivileged() -> None:
    for workload in _workloads():
        pod = _pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
