"""The Kubernetes manifests (deploy/k8s), checked offline: no cluster runs here.

Every overlay (and prod with the shared-state component) is rendered by `kubectl kustomize` (or `kustomize
build`) and every object is validated: built-in kinds by kubernetes-validate --strict against the API schemas
of Kubernetes 1.29 and of the newest version it ships, the Prometheus Operator's kinds against the closed
JSON schemas in deploy/k8s/schemas, the PrometheusRule's groups by `promtool check rules`. Then what no schema
knows: the pod's security context, probes, Secrets (named, documented, never in the repo), every folder the
settings point at on a volume that can hold it, the Service, ServiceMonitor and alert rules agreeing on
names, and the PrometheusRule equal to monitoring/prometheus/rules (deploy/k8s/render_rules.py --check).
Broken copies of the manifests must fail the same checks, so the checks are known to bite.

Without kubectl or kustomize these tests skip, saying so, unless REQUIRE_K8S_TOOLS=1 (CI sets it); promtool
follows REQUIRE_PROMETHEUS as in test_alert_rules.py. No TEXTCLF_ prefix: tests/conftest.py clears those.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from auth.tls import https_env, make_self_signed, server_tls_args
from tests.conftest import REPO
from tests.integration.test_alert_rules import tool
from textclf.core.settings import Settings, env_name, load_settings

K8S = REPO / "deploy" / "k8s"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
SHARED_STATE = K8S / "components" / "shared-state"
RENDERINGS = [*OVERLAYS, "prod+shared-state"]
K8S_VERSIONS = ["1.29", latest_version()]
CRD_SCHEMAS = {
    "ServiceMonitor": K8S / "schemas" / "servicemonitor-monitoring-v1.json",
    "PrometheusRule": K8S / "schemas" / "prometheusrule-monitoring-v1.json",
}
REQUIRE_ENV = "REQUIRE_K8S_TOOLS"
IMAGE_HOME = "/home/bentoml"  # the image user's home inside the container, not a path of this machine
BENTOML_UID = 1034  # the `bentoml` user of BentoML's image
WRITABLE = ("emptyDir", "persistentVolumeClaim")
SETTINGS_DIRS = ("home", "profiles_dir", "audit_dir", "feedback_dir")  # what the server writes


# --- rendering ---------------------------------------------------------------------------------------------
def renderer() -> list[str]:
    """The kustomize command: the standalone binary, or the one built into kubectl."""
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    why = "neither kustomize nor kubectl is on PATH (kubectl: https://kubernetes.io/docs/tasks/tools/)"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but {why}")
    pytest.skip(why)


def render(folder: Path) -> list[dict[str, Any]]:
    done = subprocess.run([*renderer(), str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{folder} does not render:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every overlay's objects, and prod with the shared-state component added as the README says."""
    out = {name: render(folder) for name, folder in OVERLAYS.items()}
    wrapper = tmp_path_factory.mktemp("k8s-shared-state")
    (wrapper / "kustomization.yaml").write_text(  # kustomize takes only relative paths to other roots
        yaml.safe_dump(
            {
                "namespace": "textclf",
                "resources": [os.path.relpath(OVERLAYS["prod"], wrapper)],
                "components": [os.path.relpath(SHARED_STATE, wrapper)],
            }
        )
    )
    out["prod+shared-state"] = render(wrapper)
    return out


def the(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def settings_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    return the(objects, "ConfigMap")["data"]


# --- the checks no schema makes (each returns what is wrong, so broken copies can prove they bite) ----------
def secret_refs(pod: dict[str, Any]) -> list[str | None]:
    """Every Secret name a pod spec refers to (None where a reference has no name)."""
    refs: list[str | None] = [s.get("name") for s in pod.get("imagePullSecrets", [])]
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            refs.append(volume["secret"].get("secretName"))
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                refs.append(source["secret"].get("name"))
    for c in pod.get("initContainers", []) + pod["containers"]:
        for env in c.get("env", []):
            if "secretKeyRef" in env.get("valueFrom", {}):
                refs.append(env["valueFrom"]["secretKeyRef"].get("name"))
        refs.extend(e["secretRef"].get("name") for e in c.get("envFrom", []) if "secretRef" in e)
    return refs


def _mount_of(path: str, mounts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The mount a path lies on: the deepest mountPath above it."""
    above = [m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    return max(above, key=lambda m: len(m["mountPath"]), default=None)


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def deployment_problems(deployment: dict[str, Any], settings_env: dict[str, str]) -> list[str]:
    """What is wrong with the server's Deployment, given the settings its ConfigMap holds."""
    problems: list[str] = []
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    settings = load_settings(settings_env)
    # security context: non-root as BentoML's user, nothing to escalate to, read-only image
    pod_sc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    for where, ctx, field, want in [
        ("pod", pod_sc, "runAsNonRoot", True),
        ("pod", pod_sc, "runAsUser", BENTOML_UID),
        ("pod", pod_sc, "seccompProfile", {"type": "RuntimeDefault"}),
        ("container", sc, "allowPrivilegeEscalation", False),
        ("container", sc, "readOnlyRootFilesystem", True),
        ("container", sc, "capabilities", {"drop": ["ALL"]}),
    ]:
        if ctx.get(field) != want:
            problems.append(f"{where} securityContext.{field} is {ctx.get(field)!r}, want {want!r}")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("the pod mounts a service account token it never uses")
    if pod.get("enableServiceLinks") is not False:
        problems.append("service links inject TEXTCLF_PORT & co. into the settings' namespace")
    # probes: on the server's own endpoints, on its port
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    if ports.get("http") != 3000:
        problems.append(f"container port `http` is {ports.get('http')}, the server listens on 3000")
    for probe, path in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
        ("startupProbe", "/livez"),
    ]:
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("http", 3000):
            problems.append(f"{probe} is {get or None}, want GET {path} on port http")
    startup = c.get("startupProbe", {})
    if startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) < 60:
        problems.append("startupProbe gives the model less than a minute to load")
    # Secrets: by name, mounted read-only; the key ring and the data key where the settings look
    problems += ["a Secret reference without a name" for ref in secret_refs(pod) if not ref]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = c.get("volumeMounts", [])
    problems += [
        f"mount {m['mountPath']} names no volume {m['name']}" for m in mounts if m["name"] not in volumes
    ]
    problems += [f"volume {name} is never mounted" for name in set(volumes) - {m["name"] for m in mounts}]
    for name, path in [("auth_dir", settings.auth_dir), ("data_key_file", settings.data_key_file)]:
        mount = _mount_of(path, mounts) if path else None
        volume = volumes.get(mount["name"], {}) if mount else {}
        if "secret" not in volume or not mount.get("readOnly"):
            problems.append(f"{env_name(name)}={path} is not on a read-only Secret mount")
        elif name == "data_key_file" and "items" in volume["secret"]:
            relative = path.removeprefix(mount["mountPath"].rstrip("/") + "/")
            if relative not in {i["path"] for i in volume["secret"]["items"]}:
                problems.append(f"{env_name(name)}={path}: the Secret mount holds no {relative}")
        if volume.get("secret", {}).get("defaultMode", 0o644) & 0o007:
            problems.append(f"{env_name(name)}: Secret files readable by others (defaultMode)")
    # every folder the server writes to, on a writable volume (the image's filesystem is read-only)
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    writable = [(f"{env_name(n)}", str(settings.path(n))) for n in SETTINGS_DIRS]
    writable += [("HOME", env.get("HOME") or IMAGE_HOME), ("/tmp", "/tmp")]
    writable += [("BENTOML_HOME", env.get("BENTOML_HOME") or f"{IMAGE_HOME}/")]  # the image's default
    for what, path in writable:
        mount = _mount_of(path, mounts)
        volume = volumes.get(mount["name"], {}) if mount else {}
        if not any(kind in volume for kind in WRITABLE) or mount.get("readOnly"):
            problems.append(f"{what}={path} is not on a writable volume")
    # workers = CPUs, explicitly (the default follows the cgroup quota too; the manifest should say it)
    cpu_limit = _cpu(str(c.get("resources", {}).get("limits", {}).get("cpu", "0")))
    if settings.workers != max(1, int(cpu_limit)):
        problems.append(f"TEXTCLF_WORKERS={settings.workers} but the CPU limit is {cpu_limit}")
    # draining: endpoints drop the pod during preStop, then requests in flight get their timeout
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop = int(sleep[1]) if sleep[:1] == ["sleep"] else 0
    if pre_stop < 5:
        problems.append("no preStop sleep: the Service still sends requests to a stopping pod")
    if pod.get("terminationGracePeriodSeconds", 30) < pre_stop + settings.timeout_s:
        problems.append("terminationGracePeriodSeconds is shorter than preStop + TEXTCLF_TIMEOUT_S")
    rolling = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
    if rolling.get("maxUnavailable") != 0:
        problems.append("a rollout may take pods away before new ones are ready (maxUnavailable != 0)")
    return problems


def settings_problems(settings_env: dict[str, str]) -> list[str]:
    """A ConfigMap of TEXTCLF_* settings the server accepts, every name one it reads."""
    known = {env_name(name) for name in Settings.model_fields}
    problems = [
        f"{key} is not a setting (textclf/core/settings.py)" for key in settings_env if key not in known
    ]
    try:
        load_settings(settings_env)
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def crd_errors(obj: dict[str, Any]) -> list[str]:
    schema = json.loads(CRD_SCHEMAS[obj["kind"]].read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def validate_builtin(obj: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


# --- every overlay renders and every object is valid ----------------------------------------------------
def test_overlays_render_the_expected_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    base = {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment", "NetworkPolicy"}
    base |= {"ServiceMonitor", "PrometheusRule"}
    kinds = {name: sorted(o["kind"] for o in objects) for name, objects in rendered.items()}
    assert kinds["dev"] == sorted(base)  # one pod: no autoscaler, no disruption budget to block drains
    assert kinds["prod"] == sorted(base | {"HorizontalPodAutoscaler", "PodDisruptionBudget"})
    assert kinds["prod+shared-state"] == sorted([*kinds["prod"], "PersistentVolumeClaim"])


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", RENDERINGS)
def test_builtin_objects_are_valid(
    rendered: dict[str, list[dict[str, Any]]], name: str, version: str
) -> None:
    for obj in rendered[name]:
        if obj["kind"] not in CRD_SCHEMAS:
            validate_builtin(obj, version)


@pytest.mark.parametrize("name", RENDERINGS)
def test_prometheus_operator_objects_are_valid(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    for obj in rendered[name]:
        if obj["kind"] in CRD_SCHEMAS:
            assert crd_errors(obj) == [], obj["kind"]


@pytest.mark.parametrize("name", RENDERINGS)
def test_deployment_is_hardened_probed_and_has_its_volumes(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    objects = rendered[name]
    assert settings_problems(settings_of(objects)) == []
    assert deployment_problems(the(objects, "Deployment"), settings_of(objects)) == []


@pytest.mark.parametrize("name", RENDERINGS)
def test_everything_lands_in_one_restricted_namespace(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    namespace = the(rendered[name], "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in rendered[name]:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace["metadata"]["name"], obj["kind"]


# --- Secrets: referenced by name, documented, never in the repository ------------------------------------
def referenced_secrets(objects: list[dict[str, Any]]) -> set[str]:
    names = {ref for ref in secret_refs(the(objects, "Deployment")["spec"]["template"]["spec"]) if ref}

    def walk(node: Any) -> Iterator[str]:  # ServiceMonitor: tlsConfig.ca.secret, keySecret, ...
        if isinstance(node, dict):
            if isinstance(node.get("secret"), dict) and "name" in node["secret"]:
                yield node["secret"]["name"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    return names | set(walk(the(objects, "ServiceMonitor")))


def test_secrets_are_documented_and_absent(rendered: dict[str, list[dict[str, Any]]]) -> None:
    readme = (REPO / "README.md").read_text()
    created = set(re.findall(r"kubectl create secret \w+ ([a-z0-9-]+)", readme))
    every = set().union(*(referenced_secrets(objects) for objects in rendered.values()))
    assert every == {"textclf-auth", "textclf-data-key", "textclf-tls"}
    assert every <= created, f"README.md shows no `kubectl create secret` for {sorted(every - created)}"
    for objects in rendered.values():
        assert not [o for o in objects if o["kind"] == "Secret"]
    for path in K8S.rglob("*.y*ml"):  # nothing that would become a Secret, even outside the overlays
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path
            assert "secretGenerator" not in (doc or {}), path


# --- names that must agree across objects ------------------------------------------------------------------
@pytest.mark.parametrize("name", RENDERINGS)
def test_service_monitor_and_policy_select_the_pods(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    objects = rendered[name]
    deployment, service = the(objects, "Deployment"), the(objects, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    # the job label of a ServiceMonitor's targets is the Service's name; the alerts select job="textclf"
    assert service["metadata"]["name"] == "textclf"
    assert 'up{job="textclf"}' in (REPO / "monitoring/prometheus/rules/alerts.yml").read_text()
    assert selects(service["spec"]["selector"], pod_labels)
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    monitor = the(objects, "ServiceMonitor")
    assert "jobLabel" not in monitor["spec"]
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == ["/metrics"]
    policy = the(objects, "NetworkPolicy")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    prometheus = [p for p in peers if "podSelector" in p and "namespaceSelector" in p]
    assert [p["podSelector"]["matchLabels"] for p in prometheus] == [{"app.kubernetes.io/name": "prometheus"}]
    assert all(p["port"] in ("http", 3000) for rule in policy["spec"]["ingress"] for p in rule["ports"])
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]} == {53}
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        for obj in (o for o in objects if o["kind"] == kind):
            target = obj["spec"].get("scaleTargetRef", {}).get("name") or deployment["metadata"]["name"]
            assert target == deployment["metadata"]["name"]
            if kind == "PodDisruptionBudget":
                assert selects(obj["spec"]["selector"]["matchLabels"], pod_labels)


def test_dev_is_one_plain_http_pod(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = the(rendered["dev"], "Deployment")
    c = container(deployment)
    assert deployment["spec"]["replicas"] == 1
    assert c["args"] == ["serve", "--host", "0.0.0.0", "--port", "3000"]
    assert all(c[p]["httpGet"].get("scheme", "HTTP") == "HTTP" for p in ("readinessProbe", "livenessProbe"))
    assert settings_of(rendered["dev"])["TEXTCLF_WORKERS"] == "1"


def test_prod_autoscales_spreads_and_serves_https(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    objects = rendered["prod"]
    deployment, hpa = the(objects, "Deployment"), the(objects, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it; `kubectl apply` would reset it
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert the(objects, "PodDisruptionBudget")["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    pod = deployment["spec"]["template"]["spec"]
    assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    c = container(deployment)
    assert c["resources"]["requests"] == c["resources"]["limits"]  # Guaranteed QoS
    # TLS: exactly the flags `textclf serve --ssl-certfile/--ssl-keyfile` passes, for the mounted pair
    pair = make_self_signed(tmp_path)
    flags = server_tls_args(pair.cert, pair.key)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "tls")
    mounted = {
        str(pair.cert.resolve()): f"{mount['mountPath']}/tls.crt",
        str(pair.key.resolve()): f"{mount['mountPath']}/tls.key",
    }
    assert c["args"] == ["serve", "--host", "0.0.0.0", "--port", "3000", *(mounted.get(f, f) for f in flags)]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]
    assert {i["key"] for i in tls["items"]} == {"tls.crt", "tls.key"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert {k: env.get(k) for k in https_env({})} == https_env({})
    assert all(
        c[p]["httpGet"]["scheme"] == "HTTPS" for p in ("readinessProbe", "livenessProbe", "startupProbe")
    )
    (endpoint,) = the(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == tls["secretName"]
    assert not endpoint["tlsConfig"].get("insecureSkipVerify")


def test_shared_state_gives_each_pod_its_own_feedback_and_audit_folder(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["prod+shared-state"]
    assert the(objects, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]
    c = container(the(objects, "Deployment"))
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    settings = load_settings(settings_of(objects))
    assert mounts[str(settings.path("profiles_dir"))]["subPath"] == "profiles"  # shared: drift sees all pods
    for name in ("audit_dir", "feedback_dir"):  # files named per worker only: per-pod folders
        assert mounts[str(settings.path(name))]["subPathExpr"].endswith("/$(POD_NAME)")
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]


# --- the PrometheusRule is the monitoring rules -------------------------------------------------------------
def test_prometheus_rule_is_generated_from_the_monitoring_rules(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    check = subprocess.run(
        [sys.executable, str(K8S / "render_rules.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    groups = []
    for name in ("recording.yml", "alerts.yml"):
        groups += yaml.safe_load((REPO / "monitoring/prometheus/rules" / name).read_text())["groups"]
    for objects in rendered.values():
        assert the(objects, "PrometheusRule")["spec"]["groups"] == groups


def test_render_rules_check_notices_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(K8S))
    try:
        import render_rules
    finally:
        sys.path.remove(str(K8S))
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text(render_rules.OUTPUT.read_text().replace("> 0.01", "> 0.05"))
    monkeypatch.setattr(render_rules, "OUTPUT", stale)
    assert render_rules.main(["--check"]) == 1
    assert render_rules.main([]) == 0
    assert render_rules.main(["--check"]) == 0


def promtool_check(spec: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    rules = folder / "rules.yml"
    rules.write_text(yaml.safe_dump(spec, sort_keys=False))
    command = [tool("promtool"), "check", "rules", str(rules)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_prometheus_rule(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    done = promtool_check(the(rendered["prod"], "PrometheusRule")["spec"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


# --- broken manifests fail the same checks ----------------------------------------------------------------
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation: set (or with value ... delete) the field at a dotted path; numbers index lists."""

    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = obj
        for part in parents:
            node = node[part]
        if value is ...:
            del node[last]
        else:
            node[last] = value

    return mutate


POD = "spec.template.spec"
C0 = f"{POD}.containers.0"
BROKEN_SCHEMA = {  # kubernetes-validate --strict must refuse each
    "unknown field": _set(f"{C0}.imagePullPolicyy", "Always"),
    "unknown field in a probe": _set(f"{C0}.readinessProbe.httpGet.paht", "/readyz"),
    "wrong type (port as text)": _set(f"{C0}.ports.0.containerPort", "3000"),
    "wrong type (history as text)": _set("spec.revisionHistoryLimit", "five"),
    "missing required field (container name)": _set(f"{C0}.name", ...),
    "missing required field (selector)": _set("spec.selector", ...),
}


def _named(kind: str, name: str, field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of the volume or mount called `name` (value ... deletes the field)."""

    def mutate(deployment: dict[str, Any]) -> None:
        pod = deployment["spec"]["template"]["spec"]
        items = pod["volumes"] if kind == "volume" else pod["containers"][0]["volumeMounts"]
        (item,) = [i for i in items if i["name"] == name]
        _set(field, value)(item)

    return mutate


BROKEN_POD = {  # the schema allows each; deployment_problems must not
    "secret reference without a name": _named("volume", "data-key", "secret.secretName", ...),
    "secret readable by all": _named("volume", "auth", "secret.defaultMode", 0o444),
    "key ring writable": _named("mount", "auth", "readOnly", False),
    "data key not where the settings look": _named("volume", "data-key", "secret.items.0.path", "key"),
    "HOME on the read-only image": _named("mount", "state", "mountPath", "/var/lib/other"),
    "no /tmp": _named("mount", "tmp", "mountPath", "/scratch"),
    "BentoML's home in the image": _named("mount", "bentoml-home", "mountPath", IMAGE_HOME),
    "writable image filesystem": _set(f"{C0}.securityContext.readOnlyRootFilesystem", False),
    "privilege escalation": _set(f"{C0}.securityContext.allowPrivilegeEscalation", True),
    "runs as root": _set(f"{POD}.securityContext.runAsUser", 0),
    "keeps capabilities": _set(f"{C0}.securityContext.capabilities", {"drop": ["NET_RAW"]}),
    "no seccomp profile": _set(f"{POD}.securityContext.seccompProfile", ...),
    "service links on": _set(f"{POD}.enableServiceLinks", True),
    "readiness on the wrong path": _set(f"{C0}.readinessProbe.httpGet.path", "/healthz"),
    "no liveness probe": _set(f"{C0}.livenessProbe", ...),
    "no startup budget for the model": _set(f"{C0}.startupProbe.failureThreshold", 2),
    "no preStop drain": _set(f"{C0}.lifecycle", ...),
    "grace shorter than a request": _set(f"{POD}.terminationGracePeriodSeconds", 15),
    "rollout drops capacity": _set("spec.strategy.rollingUpdate.maxUnavailable", 1),
    "more CPUs than workers": _set(f"{C0}.resources.limits.cpu", "4"),
}


@pytest.fixture()
def dev_deployment(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return copy.deepcopy(the(rendered["dev"], "Deployment"))


@pytest.mark.parametrize("broken", BROKEN_SCHEMA, ids=list(BROKEN_SCHEMA))
def test_schema_refuses_a_broken_deployment(dev_deployment: dict[str, Any], broken: str) -> None:
    validate_builtin(dev_deployment, K8S_VERSIONS[-1])  # the unbroken copy passes
    BROKEN_SCHEMA[broken](dev_deployment)
    for version in K8S_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            validate_builtin(dev_deployment, version)


@pytest.mark.parametrize("broken", BROKEN_POD, ids=list(BROKEN_POD))
def test_pod_checks_refuse_a_broken_deployment(
    dev_deployment: dict[str, Any], rendered: dict[str, list[dict[str, Any]]], broken: str
) -> None:
    settings = settings_of(rendered["dev"])
    assert deployment_problems(dev_deployment, settings) == []
    BROKEN_POD[broken](dev_deployment)
    assert deployment_problems(dev_deployment, settings) != []


@pytest.mark.parametrize(
    ("key", "value"),
    [("TEXTCLF_WORKRES", "2"), ("TEXTCLF_WORKERS", "two"), ("TEXTCLF_TOKEN_ALG", "none")],
)
def test_settings_checks_refuse_a_bad_configmap(
    rendered: dict[str, list[dict[str, Any]]], key: str, value: str
) -> None:
    assert settings_problems({**settings_of(rendered["prod"]), key: value}) != []


@pytest.mark.parametrize(
    ("kind", "broken"),
    [
        ("ServiceMonitor", _set("spec.endpoints.0.port", 3000)),
        ("ServiceMonitor", _set("spec.endpoints.0.intervall", "15s")),
        ("ServiceMonitor", _set("spec.endpoints.0.interval", "15 seconds")),
        ("ServiceMonitor", _set("spec.selector", ...)),
        ("ServiceMonitor", _set("spec.endpoints.0.tlsConfig.ca.secret.key", ...)),
        ("PrometheusRule", _set("spec.groups.0.name", ...)),
        ("PrometheusRule", _set("spec.groups.1.rules.0.for", "one minute")),
        ("PrometheusRule", _set("spec.groups.1.rules.0.expr", ...)),
        ("PrometheusRule", _set("spec.groups.1.rules.0.labels.severity", 2)),
    ],
)
def test_crd_schemas_refuse_broken_objects(
    rendered: dict[str, list[dict[str, Any]]], kind: str, broken: Callable[[dict[str, Any]], None]
) -> None:
    obj = copy.deepcopy(the(rendered["prod"], kind))
    assert crd_errors(obj) == []
    broken(obj)
    assert crd_errors(obj) != []


def test_promtool_refuses_a_broken_rule(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    spec = copy.deepcopy(the(rendered["prod"], "PrometheusRule")["spec"])
    spec["groups"][1]["rules"][0]["expr"] = "up{job=textclf} =="
    assert promtool_check(spec, tmp_path).returncode != 0
