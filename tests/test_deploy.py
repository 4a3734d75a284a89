"""docker-compose.yml and deploy/k8s, validated offline: against the compose specification and
the Kubernetes 1.32 API in strict mode (where the tools are installed), and for the rules the
README promises (start order, health checks, loopback-only ports, non-root read-only pods,
only the gateway exposed, the broker's credentials only in trading)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.launch import START_ORDER
from services.common.config import REPO_ROOT, SERVICES

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
COMPOSE_TLS_FILE = REPO_ROOT / "deploy" / "compose-tls.yml"
TLS_DIRECTORY = "/etc/trader/tls"
TLS_PATHS = {"TRADER_TLS_CERT": f"{TLS_DIRECTORY}/tls.crt", "TRADER_TLS_KEY": f"{TLS_DIRECTORY}/tls.key",
             "TRADER_TLS_CA": f"{TLS_DIRECTORY}/ca.crt", "TRADER_TLS_CLIENT_CA": f"{TLS_DIRECTORY}/ca.crt"}
K8S = REPO_ROOT / "deploy" / "k8s"
ORDER = (*START_ORDER, "gateway")
BROKER_SECRETS = {"TRADER_TRADERNET_API_KEY", "TRADER_TRADERNET_API_SECRET"}


def tool(name: str) -> str:
    """A command from the virtual environment (dev dependency) or PATH; skip where missing."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: that validation is skipped")
    return found


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_file_follows_the_compose_specification():
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE_FILE],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ORDER)
def test_compose_service_waits_for_the_healthy_services_started_before_it(compose, name):
    service = compose["services"][name]
    assert service["command"] == [name]
    assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "services.common.healthprobe", name]
    earlier = ORDER[:ORDER.index(name)]
    depends = service["depends_on"]
    assert {dep for dep in depends if dep != "postgres"} == set(earlier)
    assert all(depends[dep]["condition"] == "service_healthy" for dep in depends)
    assert depends["postgres"]["required"] is False  # only under the postgres profile


@pytest.mark.parametrize("name", ORDER)
def test_compose_service_is_confined(compose, name):
    service = compose["services"][name]
    _, port = SERVICES[name]
    [published] = service["ports"]
    assert published.startswith("127.0.0.1:") and published.endswith(f":{port}")
    [volume] = service["volumes"]
    volume_name, _, mount = volume.partition(":")
    assert mount == "/var/lib/trader" and volume_name in compose["volumes"]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["env_file"] == "${TRADER_ENV_FILE:-.env}"


def test_compose_each_service_has_its_own_volume(compose):
    volumes = [compose["services"][name]["volumes"][0].split(":")[0] for name in ORDER]
    assert len(set(volumes)) == len(ORDER)


@pytest.mark.parametrize("name", ORDER)
def test_compose_peers_are_reached_by_service_name(compose, name):
    environment = compose["services"][name]["environment"]
    assert environment["TRADER_LISTEN_HOST"] == "0.0.0.0"
    for peer, (_, port) in SERVICES.items():
        assert environment[f"TRADER_{peer.upper()}_ADDR"] == f"{peer}:{port}"
    blanked = {key for key, value in environment.items() if value == ""}
    assert blanked == (set() if name == "trading" else BROKER_SECRETS)


def test_compose_tls_override_follows_the_compose_specification():
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE_TLS_FILE],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ORDER)
def test_compose_tls_override_gives_every_service_mutual_tls(name):
    service = yaml.safe_load(COMPOSE_TLS_FILE.read_text())["services"][name]
    [volume] = service["volumes"]
    assert volume == f"${{TRADER_TLS_DIR:-./tls}}:{TLS_DIRECTORY}:ro"  # read-only, beside the state volume
    assert service["environment"] == TLS_PATHS


def test_compose_profiles(compose):
    assert compose["services"]["postgres"]["profiles"] == ["postgres"]
    assert compose["services"]["jaeger"]["profiles"] == ["tracing"]
    assert all(port.startswith("127.0.0.1:") for port in compose["services"]["jaeger"]["ports"])
    sql = (REPO_ROOT / "deploy" / "postgres" / "create-databases.sql").read_text()
    assert all(f"CREATE DATABASE {name};" in sql for name in ORDER)


def base_documents() -> list[dict]:
    return [doc for name in ORDER for doc in yaml.safe_load_all((K8S / "base" / f"{name}.yaml").read_text())]


def of_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


@pytest.mark.parametrize("name", ORDER)
def test_k8s_deployment_is_restricted_and_probed(name):
    deployment = of_kind(base_documents(), "Deployment")[f"trader-{name}"]
    grpc_name, port = SERVICES[name]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["args"] == [name] and container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["grpc"] == {"port": port, "service": grpc_name}
    liveness = container["livenessProbe"]
    if name == "trading":  # NOT_SERVING until reconciled, and must stay up to be reconciled
        assert liveness["exec"]["command"][-2:] == ["trading", "--alive"]
    else:
        assert liveness["grpc"] == {"port": port, "service": grpc_name}
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts == {"/var/lib/trader", "/tmp"}  # the only writable paths
    secrets = {entry["name"] for entry in container["env"] if "valueFrom" in entry}
    assert "TRADER_API_TOKEN" in secrets
    broker = BROKER_SECRETS | {"TRADER_LIVE_CONFIRM"}
    assert broker <= secrets if name == "trading" else not broker & secrets


def test_k8s_only_the_gateway_is_exposed():
    services = of_kind(base_documents(), "Service")
    assert {name: svc["spec"]["type"] for name, svc in services.items()} == {
        f"trader-{name}": "ClusterIP" for name in ORDER}
    overlay = (K8S / "overlays" / "example" / "kustomization.yaml").read_text()
    patches = yaml.safe_load(overlay)["patches"]
    exposed = [patch["target"]["name"] for patch in patches if "LoadBalancer" in patch["patch"]]
    assert exposed == ["trader-gateway"]


def test_k8s_settings_point_at_the_services():
    settings = dict(line.split("=", 1) for line in (K8S / "base" / "settings.env").read_text().splitlines()
                    if line and not line.startswith("#"))
    services = of_kind(base_documents(), "Service")
    for name, (_, port) in SERVICES.items():
        host, _, service_port = settings[f"TRADER_{name.upper()}_ADDR"].partition(":")
        assert host in services and int(service_port) == port == services[host]["spec"]["ports"][0]["port"]
    assert settings["TRADER_LISTEN_HOST"] == "0.0.0.0"


@pytest.fixture(scope="module")
def k8s_copy(tmp_path_factory) -> Path:
    """deploy/k8s with the overlays' secret files made from their examples (as a user would)."""
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env", "database.env"))
    for example in copy.glob("overlays/*/*.env.example"):
        text = example.read_text().replace("TRADER_API_TOKEN=\n", "TRADER_API_TOKEN=validation-only-token-0123456789\n")
        example.with_suffix("").write_text(text)
    return copy


@pytest.mark.parametrize("directory", ["base", "overlays/example", "overlays/postgres", "overlays/tls"])
def test_k8s_manifests_validate_against_kubernetes_1_32_strictly(k8s_copy, directory):
    rendered = subprocess.run([tool("kubectl"), "kustomize", k8s_copy / directory],
                              capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    validated = subprocess.run([tool("kubernetes-validate"), "-k", "1.32", "--strict", "--quiet", "-"],
                               input=rendered.stdout, capture_output=True, text=True, timeout=120)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    documents = list(yaml.safe_load_all(rendered.stdout))
    assert len(of_kind(documents, "Deployment")) == len(ORDER)
    if directory == "overlays/tls":
        settings = of_kind(documents, "ConfigMap")
        [data] = [config["data"] for name, config in settings.items() if name.startswith("trader-settings")]
        assert {key: data[key] for key in TLS_PATHS} == TLS_PATHS
        for deployment in of_kind(documents, "Deployment").values():
            pod = deployment["spec"]["template"]["spec"]
            [container] = pod["containers"]
            assert {"name": "tls", "mountPath": TLS_DIRECTORY, "readOnly": True} in container["volumeMounts"]
            assert {"name": "tls", "secret": {"secretName": "trader-tls", "defaultMode": 0o440}} in pod["volumes"]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):  # the kubelet's gRPC probe has no TLS
                assert container[probe]["exec"]["command"][:3] == ["python", "-m", "services.common.healthprobe"]
    if directory == "overlays/postgres":
        assert not of_kind(documents, "PersistentVolumeClaim")
        for name, deployment in of_kind(documents, "Deployment").items():
            env = {entry["name"] for entry in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert {key for key in env if key.endswith("_DB_URL")} == {f"TRADER_{name[7:].upper()}_DB_URL"}
