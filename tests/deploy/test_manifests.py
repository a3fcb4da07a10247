"""deploy/k8s rendered with kustomize, validated offline against Kubernetes' schemas, and held to its invariants."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.manifests import OUTSIDE_THE_CLUSTER, Peer, ingress_allowed, render, selector_matches

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if (path / "kustomization.yaml").is_file())
NAMESPACE = "audiosearch"
GRPC_SERVICES = {"gateway": 50051, "search": 50052, "catalog": 50053}
INTERNAL = ("embedder", "search", "catalog")
# Oldest Kubernetes the manifests support: native gRPC probes (1.27), preStop `sleep` on by default (1.30).
OLDEST_KUBERNETES = "1.30.0"
# Custom resources, whose schemas come with their operators and are not in kubernetes-validate: skipped by kind.
CUSTOM_RESOURCES = {
    ("milvus.io/v1beta1", "Milvus"),  # Milvus Operator (prod's Milvus cluster)
    ("monitoring.coreos.com/v1", "PodMonitor"),  # Prometheus Operator (components/monitoring)
    ("monitoring.coreos.com/v1", "PrometheusRule"),  # Prometheus Operator (deploy/monitoring/alerts.yaml)
    ("cert-manager.io/v1", "Issuer"),  # cert-manager (components/internal-mtls)
    ("cert-manager.io/v1", "Certificate"),
}


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/ (components/monitoring reaches ../../../monitoring) with each uncommitted secret file made
    from its committed .example; returns its k8s folder."""
    copy = tmp_path_factory.mktemp("deploy") / "deploy" / "k8s"
    shutil.copytree(K8S.parent, copy.parent)
    for example in copy.glob("overlays/*/**/*.example"):
        real = example.with_suffix("")
        if not real.exists():
            shutil.copyfile(example, real)
    return copy


@pytest.fixture(scope="session")
def rendered(tree: Path) -> dict[str, list[dict]]:
    targets = {"base": tree / "base", **{name: tree / "overlays" / name for name in OVERLAYS}}
    return {name: render(path) for name, path in targets.items()}


def of_kind(documents: list[dict], kind: str, namespace: str | None = NAMESPACE) -> list[dict]:
    return [
        document for document in documents
        if document["kind"] == kind and (namespace is None or document["metadata"].get("namespace") == namespace)
    ]


def named(documents: list[dict], kind: str, name: str, namespace: str | None = NAMESPACE) -> dict:
    matches = [document for document in of_kind(documents, kind, namespace) if document["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name} in {namespace}, found {len(matches)}"
    return matches[0]


def app_deployments(documents: list[dict]) -> list[dict]:
    found = [
        document for document in of_kind(documents, "Deployment")
        if document["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "audiosearch"
    ]
    assert {deployment["metadata"]["name"] for deployment in found} == {"gateway", "embedder", "search", "catalog"}
    return found


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def container(deployment: dict, name: str | None = None) -> dict:
    name = name or deployment["metadata"]["name"]
    return next(c for c in pod_spec(deployment)["containers"] if c["name"] == name)


def environment(documents: list[dict], deployment: dict, container_spec: dict) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom ConfigMaps, then env (secret refs shown)."""
    namespace = deployment["metadata"]["namespace"]
    values: dict[str, str] = {}
    for source in container_spec.get("envFrom", []):
        if "configMapRef" in source:
            values.update(named(documents, "ConfigMap", source["configMapRef"]["name"], namespace)["data"])
    for variable in container_spec.get("env", []):
        if "value" in variable:
            values[variable["name"]] = variable["value"]
        else:
            reference = variable["valueFrom"].get("secretKeyRef", {})
            values[variable["name"]] = f"<secret {reference.get('name')}/{reference.get('key')}>"
    return values


def for_every_overlay(test):
    return pytest.mark.parametrize("overlay", OVERLAYS)(test)


# --- schema -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["base", *OVERLAYS])
@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_renders_and_validates_strictly_offline(rendered: dict[str, list[dict]], target: str, version: str) -> None:
    documents = rendered[target]
    assert documents
    problems = []
    for document in documents:
        if (document["apiVersion"], document["kind"]) in CUSTOM_RESOURCES:
            continue
        name = f"{document['kind']}/{document['metadata']['name']}"
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{name}: {error.message} at {'/'.join(map(str, error.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: no schema (a custom resource? list it in CUSTOM_RESOURCES)")
    assert not problems, "\n".join(problems)


# --- workloads ----------------------------------------------------------------------------------------------


@for_every_overlay
def test_every_deployment_has_readiness_and_liveness_probes(rendered, overlay: str) -> None:
    for deployment in app_deployments(rendered[overlay]):
        for spec in pod_spec(deployment)["containers"]:
            assert "readinessProbe" in spec, deployment["metadata"]["name"]
            assert "livenessProbe" in spec, deployment["metadata"]["name"]


@for_every_overlay
def test_every_container_has_cpu_and_memory_requests_and_limits(rendered, overlay: str) -> None:
    for deployment in app_deployments(rendered[overlay]):
        spec = pod_spec(deployment)
        for container_spec in spec["containers"] + spec.get("initContainers", []):
            resources = container_spec.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (container_spec["name"], bound)


@for_every_overlay
def test_every_deployment_has_a_disruption_budget_and_an_autoscaler(rendered, overlay: str) -> None:
    documents = rendered[overlay]
    budgets = of_kind(documents, "PodDisruptionBudget")
    autoscalers = of_kind(documents, "HorizontalPodAutoscaler")
    for deployment in app_deployments(documents):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert [b for b in budgets if selector_matches(b["spec"]["selector"], labels)], f"no PDB selects {name}"
        targeting = [a for a in autoscalers if a["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name}]
        assert len(targeting) == 1, f"{name}: expected one HPA, found {len(targeting)}"
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns the replica count"


@for_every_overlay
def test_pods_run_hardened(rendered, overlay: str) -> None:
    for deployment in app_deployments(rendered[overlay]):
        spec = pod_spec(deployment)
        name = deployment["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container_spec in spec["containers"] + spec.get("initContainers", []):
            context = container_spec["securityContext"]
            assert context.get("runAsNonRoot", True) is True, name
            assert context.get("runAsUser", 1) != 0, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            mounts = {m["mountPath"]: m["name"] for m in container_spec.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}/{container_spec['name']}: /tmp is no emptyDir"


@for_every_overlay
def test_grpc_services_are_probed_over_native_grpc_health(rendered, overlay: str) -> None:
    for deployment in app_deployments(rendered[overlay]):
        name = deployment["metadata"]["name"]
        if name not in GRPC_SERVICES:
            continue
        spec = container(deployment)
        ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
        assert ports["grpc"] == GRPC_SERVICES[name]
        environment_of = environment(rendered[overlay], deployment, spec)
        prefix = name.upper()
        assert environment_of[f"{prefix}_HOST"] == "0.0.0.0"
        assert environment_of[f"{prefix}_PORT"] == str(GRPC_SERVICES[name])
        # Under mTLS the kubelet (no client certificate) probes the plaintext health-only port.
        probed = int(environment_of.get(f"{prefix}_HEALTH_PORT", GRPC_SERVICES[name]))
        assert probed in ports.values(), (name, probed)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert spec[probe]["grpc"]["port"] == probed, (name, probe)


@for_every_overlay
def test_embedder_probes_triton_health_and_allows_ten_minutes_to_load(rendered, overlay: str) -> None:
    spec = container(named(rendered[overlay], "Deployment", "embedder"))
    startup = spec["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert spec["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {p["name"]: p["containerPort"] for p in spec["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}


def gpus(deployment: dict) -> list[object]:
    resources = container(deployment)["resources"]
    return [bound.get("nvidia.com/gpu") for bound in resources.values() if "nvidia.com/gpu" in bound]


def test_embedder_asks_for_a_gpu_in_prod(rendered) -> None:
    documents = rendered["prod"]
    embedder = named(documents, "Deployment", "embedder")
    assert gpus(embedder) == [1, 1]
    spec = pod_spec(embedder)
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    env = environment(documents, embedder, container(embedder))
    assert env["EMBEDDER_DEVICE"] == "cuda"
    assert (env["EMBEDDER_INSTANCE_COUNT"], env["EMBEDDER_MAX_BATCH_SIZE"]) == ("8", "256")
    assert float(env["EMBEDDER_BATCH_SECONDS"]) >= int(env["EMBEDDER_MAX_BATCH_SIZE"]) * 2, "one pass per batch"
    assert env["EMBEDDER_COMPILE"] == "true"
    shm = next(volume for volume in spec["volumes"] if volume["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    for deployment in app_deployments(documents):
        if deployment["metadata"]["name"] != "embedder":
            assert not gpus(deployment)


def test_embedder_runs_on_the_cpu_in_dev(rendered) -> None:
    documents = rendered["dev"]
    embedder = named(documents, "Deployment", "embedder")
    assert not gpus(embedder)
    assert "nodeSelector" not in pod_spec(embedder)
    env = environment(documents, embedder, container(embedder))
    assert env["EMBEDDER_DEVICE"] == "cpu"
    assert env["EMBEDDER_UNTRAINED"] == "false", "dev embeds with the real checkpoint too"


@for_every_overlay
def test_embedder_reads_the_checkpoint_from_a_volume_its_init_container_fills(rendered, overlay: str) -> None:
    documents = rendered[overlay]
    embedder = named(documents, "Deployment", "embedder")
    spec = pod_spec(embedder)
    (init,) = spec["initContainers"]
    command = init["command"]
    assert command[:3] == ["python", "-m", "audiosearch.embedder.fetch_weights"]
    output = Path(command[command.index("--output") + 1])
    main = container(embedder)
    assert environment(documents, embedder, main)["EMBEDDER_CHECKPOINT_PATH"] == str(output)
    assert environment(documents, embedder, main)["EMBEDDER_UNTRAINED"] == "false"
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for container_spec, read_only in ((init, False), (main, True)):
        mount = next(m for m in container_spec["volumeMounts"] if output.is_relative_to(m["mountPath"]))
        claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
        assert named(documents, "PersistentVolumeClaim", claim)
        assert mount.get("readOnly", False) is read_only
    shm = next(m for m in main["volumeMounts"] if m["mountPath"] == "/dev/shm")
    assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"


def test_prod_weights_volume_is_shared_across_gpu_nodes(rendered) -> None:
    assert named(rendered["prod"], "PersistentVolumeClaim", "embedder-weights")["spec"]["accessModes"] == [
        "ReadWriteMany"]


# --- services and balancing ----------------------------------------------------------------------------------


@for_every_overlay
def test_internal_services_are_headless_and_the_gateway_dials_them_by_dns(rendered, overlay: str) -> None:
    documents = rendered[overlay]
    for name in INTERNAL:
        assert named(documents, "Service", name)["spec"].get("clusterIP") == "None", f"{name} is not headless"
    assert named(documents, "Service", "gateway")["spec"].get("clusterIP") != "None"
    gateway = named(documents, "Deployment", "gateway")
    env = environment(documents, gateway, container(gateway))
    for variable, service in (("GATEWAY_EMBEDDER_URL", "embedder"), ("GATEWAY_SEARCH_ADDRESS", "search"),
                              ("GATEWAY_CATALOG_ADDRESS", "catalog")):
        host, _, port = env[variable].removeprefix("dns:///").partition(":")
        assert env[variable].startswith("dns:///"), env[variable]
        assert host == service, env[variable]
        ports = {p["port"] for p in named(documents, "Service", service)["spec"]["ports"]}
        target = 8001 if service == "embedder" else GRPC_SERVICES[service]
        assert int(port) == target
        assert target in ports


def test_prod_internal_hops_use_mtls_with_certificates_from_its_own_issuer(rendered) -> None:
    documents = rendered["prod"]
    certificates = {c["spec"]["secretName"]: c for c in of_kind(documents, "Certificate")}
    issuers = {issuer["metadata"]["name"] for issuer in of_kind(documents, "Issuer")}
    for certificate in certificates.values():
        assert certificate["spec"]["issuerRef"]["name"] in issuers
    gateway = named(documents, "Deployment", "gateway")
    gateway_env = environment(documents, gateway, container(gateway))
    client_certificate = certificate_mounted_at(gateway, gateway_env["GATEWAY_INTERNAL_TLS_CERT_FILE"], certificates)
    assert "client auth" in client_certificate["spec"]["usages"]
    for variable in ("GATEWAY_INTERNAL_TLS_KEY_FILE", "GATEWAY_INTERNAL_TLS_CA_FILE"):
        assert certificate_mounted_at(gateway, gateway_env[variable], certificates) is client_certificate
    for name, address_variable in (("search", "GATEWAY_SEARCH_ADDRESS"), ("catalog", "GATEWAY_CATALOG_ADDRESS"),
                                   ("embedder", "GATEWAY_EMBEDDER_URL")):
        deployment = named(documents, "Deployment", name)
        env = environment(documents, deployment, container(deployment))
        prefix = name.upper()
        server_certificate = certificate_mounted_at(deployment, env[f"{prefix}_TLS_CERT_FILE"], certificates)
        assert certificate_mounted_at(deployment, env[f"{prefix}_TLS_CLIENT_CA_FILE"], certificates)
        dialled_host = gateway_env[address_variable].removeprefix("dns:///").partition(":")[0]
        assert dialled_host in server_certificate["spec"]["dnsNames"], name
        assert "server auth" in server_certificate["spec"]["usages"]
        if name != "embedder":  # Triton checks the CA only; search and catalog also check the name
            assert env[f"{prefix}_TLS_ALLOWED_CLIENT_NAMES"] == client_certificate["spec"]["commonName"]


def certificate_mounted_at(deployment: dict, path: str, certificates: dict[str, dict]) -> dict:
    """The cert-manager Certificate whose Secret is mounted where `path` lies in the deployment's container."""
    spec = container(deployment)
    mount = next(m for m in spec["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/"))
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
    assert path.rsplit("/", 1)[1] in ("tls.crt", "tls.key", "ca.crt"), path
    return certificates[volume["secret"]["secretName"]]


def test_prod_exposes_the_gateway_through_a_load_balancer(rendered) -> None:
    assert named(rendered["prod"], "Service", "gateway")["spec"]["type"] == "LoadBalancer"
    assert named(rendered["dev"], "Service", "gateway")["spec"]["type"] == "ClusterIP"


# --- network policies ----------------------------------------------------------------------------------------


def reachable(documents: list[dict], source: Peer) -> set[tuple[str, int]]:
    """(deployment, port) pairs in the namespace that `source` may open a TCP connection to."""
    policies = of_kind(documents, "NetworkPolicy")
    found = set()
    for deployment in app_deployments(documents):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        ports = {p["name"]: p["containerPort"] for c in pod_spec(deployment)["containers"] for p in c["ports"]}
        for port in ports.values():
            if ingress_allowed(policies, NAMESPACE, labels, port, ports, source):
                found.add((deployment["metadata"]["name"], port))
    return found


@for_every_overlay
def test_only_the_gateway_is_reachable_from_outside_the_namespace(rendered, overlay: str) -> None:
    documents = rendered[overlay]
    assert named(documents, "NetworkPolicy", "default-deny-ingress")["spec"]["podSelector"] == {}
    for source in (OUTSIDE_THE_CLUSTER, Peer.pod("default", app="anything"), Peer.pod("milvus", app="milvus")):
        assert reachable(documents, source) == {("gateway", 50051)}, source
    scraper = Peer.pod("monitoring", **{"app.kubernetes.io/name": "prometheus"})
    assert reachable(documents, scraper) == {("gateway", 50051), ("embedder", 8002), ("gateway", 9091),
                                             ("search", 9092), ("catalog", 9093)}


@for_every_overlay
def test_internal_services_accept_only_the_gateway(rendered, overlay: str) -> None:
    documents = rendered[overlay]
    gateway = Peer.pod(NAMESPACE, **{"app.kubernetes.io/name": "gateway"})
    assert {("embedder", 8001), ("search", 50052), ("catalog", 50053)} <= reachable(documents, gateway)
    for name in INTERNAL:
        peer = Peer.pod(NAMESPACE, **{"app.kubernetes.io/name": name})
        assert reachable(documents, peer) == {("gateway", 50051)}, name


# --- scaling -------------------------------------------------------------------------------------------------


def test_prod_embedder_scales_on_triton_queue_time_and_the_rest_on_cpu(rendered) -> None:
    for autoscaler in of_kind(rendered["prod"], "HorizontalPodAutoscaler"):
        (metric,) = autoscaler["spec"]["metrics"]
        if autoscaler["metadata"]["name"] == "embedder":
            assert metric["type"] == "Pods"
            assert metric["pods"]["metric"]["name"] == "triton_queue_duration_ms"
        else:
            assert metric["resource"]["name"] == "cpu"
    rules = yaml.safe_load((K8S / "components/monitoring/prometheus-adapter-values.yaml").read_text())
    names = {rule["name"]["as"] for rule in rules["rules"]["custom"]}
    assert "triton_queue_duration_ms" in names, "the adapter must serve the metric the HPA reads"
    assert named(rendered["prod"], "PodMonitor", "embedder")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


# --- monitoring ----------------------------------------------------------------------------------------------


@for_every_overlay
def test_every_grpc_service_serves_metrics_on_its_named_metrics_port(rendered, overlay: str) -> None:
    documents = rendered[overlay]
    for name in GRPC_SERVICES:
        deployment = named(documents, "Deployment", name)
        spec = container(deployment)
        ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
        assert environment(documents, deployment, spec)[f"{name.upper()}_METRICS_PORT"] == str(ports["metrics"])


def test_prod_scrapes_every_service_and_ships_the_alerts_and_the_dashboard(rendered) -> None:
    documents = rendered["prod"]
    monitors = of_kind(documents, "PodMonitor")
    for deployment in app_deployments(documents):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        scraping = [m for m in monitors if selector_matches(m["spec"]["selector"], labels)]
        assert len(scraping) == 1, deployment["metadata"]["name"]
        assert [e["port"] for e in scraping[0]["spec"]["podMetricsEndpoints"]] == ["metrics"]
        assert scraping[0]["spec"]["jobLabel"] == "app.kubernetes.io/name", "the alerts select by job=<service>"
    assert named(documents, "PrometheusRule", "audiosearch")["spec"]["groups"]
    dashboard = named(documents, "ConfigMap", "audiosearch-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["audiosearch.json"])["uid"] == "audiosearch-overview"


def test_dev_runs_one_replica_of_everything(rendered) -> None:
    for autoscaler in of_kind(rendered["dev"], "HorizontalPodAutoscaler"):
        assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (1, 1)
        assert autoscaler["spec"]["metrics"][0]["type"] == "Resource", "no prometheus-adapter in dev"


def test_prod_budgets_keep_a_floor_that_never_blocks_a_drain(rendered) -> None:
    documents = rendered["prod"]
    for budget in of_kind(documents, "PodDisruptionBudget"):
        name = budget["metadata"]["name"]
        assert "maxUnavailable" not in budget["spec"]
        floor = budget["spec"]["minAvailable"]
        assert 1 <= floor < named(documents, "HorizontalPodAutoscaler", name)["spec"]["minReplicas"], name


# --- Milvus, secrets, images ---------------------------------------------------------------------------------


def milvus_uri(documents: list[dict]) -> str:
    search = named(documents, "Deployment", "search")
    return environment(documents, search, container(search))["SEARCH_MILVUS_URI"]


def test_prod_runs_milvus_in_cluster_mode_through_the_operator(rendered) -> None:
    milvus = named(rendered["prod"], "Milvus", "milvus", namespace="milvus")
    assert milvus["spec"]["mode"] == "cluster"
    assert not of_kind(rendered["prod"], "Deployment", namespace="milvus")
    # The Operator names the access Service <name>-milvus.
    assert milvus_uri(rendered["prod"]) == "http://milvus-milvus.milvus.svc:19530"


def test_dev_runs_milvus_standalone_behind_the_same_address(rendered) -> None:
    documents = rendered["dev"]
    assert not of_kind(documents, "Milvus", namespace=None)
    deployment = named(documents, "Deployment", "milvus-standalone", namespace="milvus")
    assert container(deployment, "milvus")["args"] == ["milvus", "run", "standalone"]
    service = named(documents, "Service", "milvus-milvus", namespace="milvus")
    assert 19530 in {port["port"] for port in service["spec"]["ports"]}
    assert milvus_uri(documents) == "http://milvus-milvus.milvus.svc:19530"


def ignored_by_deploy_gitignore(relative: str) -> bool:
    ignored = False
    for line in (K8S / ".gitignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(relative, pattern.lstrip("!")):
            ignored = not negated
    return ignored


@for_every_overlay
def test_secrets_come_from_uncommitted_files_that_have_committed_examples(rendered, overlay: str) -> None:
    base = K8S / "overlays" / overlay / "audiosearch"
    generators = yaml.safe_load((base / "kustomization.yaml").read_text())["secretGenerator"]
    for generator in generators:
        for entry in generator.get("envs", []) + generator.get("files", []):
            path = (base / entry.split("=", 1)[-1]).relative_to(K8S).as_posix()
            assert (K8S / f"{path}.example").is_file(), f"{path}.example is missing"
            assert ignored_by_deploy_gitignore(path), f"{path} would be committed"
            assert not ignored_by_deploy_gitignore(f"{path}.example")
            assert "CHANGE_ME" in (K8S / f"{path}.example").read_text()
    documents = rendered[overlay]
    secrets = {s["metadata"]["name"]: s for s in of_kind(documents, "Secret")}
    written_by_cert_manager = {c["spec"]["secretName"] for c in of_kind(documents, "Certificate")}
    for deployment in app_deployments(documents):
        spec = pod_spec(deployment)
        for container_spec in spec["containers"] + spec.get("initContainers", []):
            for variable in container_spec.get("env", []):
                if reference := variable.get("valueFrom", {}).get("secretKeyRef"):
                    assert reference["key"] in secrets[reference["name"]]["data"], reference
        for volume in spec["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets.keys() | written_by_cert_manager
    gateway = named(documents, "Deployment", "gateway")
    keys_file = environment(documents, gateway, container(gateway))["GATEWAY_API_KEYS_FILE"]
    mount = next(m for m in container(gateway)["volumeMounts"] if keys_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod_spec(gateway)["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"].startswith("audiosearch-api-keys")
    assert keys_file.rsplit("/", 1)[1] in secrets[volume["secret"]["secretName"]]["data"]


@for_every_overlay
def test_images_carry_a_tag_that_is_not_latest(rendered, overlay: str) -> None:
    for deployment in app_deployments(rendered[overlay]):
        spec = pod_spec(deployment)
        for container_spec in spec["containers"] + spec.get("initContainers", []):
            image = container_spec["image"]
            name, _, tag = image.rpartition(":")
            assert name, image
            assert "/" not in tag, image
            assert tag != "latest", image
            assert name.endswith("audiosearch/" + deployment["metadata"]["name"]), image
