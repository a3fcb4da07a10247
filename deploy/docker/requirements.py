"""Prints the pinned requirements one service image installs, taken from pyproject.toml.

The project keeps one dependency list; each image needs only part of it (only the embedder needs torch and
PyTriton). This picks that part by distribution name and keeps the version specifiers as pyproject.toml writes
them, so the pins live in one place. `--constraints` prints every project dependency without extras, for
`pip install -c`, so that a transitive dependency which is also a project dependency (numpy through pandas)
gets the project's pin too. When requirements.lock exists its exact pins join them, local version labels
(+cpu) dropped, so the lock of a CPU dev machine still lets the embedder image take PyPI's CUDA torch.

    python requirements.py gateway > requirements.txt
    python requirements.py --constraints > constraints.txt

deploy/docker/Dockerfile runs it in its venv stage with the build's SERVICE, so SERVICES below names the images
there are. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# What every gRPC service imports through audiosearch.common.
COMMON = frozenset(
    {
        "grpcio",
        "grpcio-health-checking",
        "grpcio-reflection",
        "grpcio-status",
        "protobuf",
        "googleapis-common-protos",
        "pydantic",
        "pydantic-settings",
        # audiosearch/common/metrics.py and tracing.py (the OTLP exporter is used only when an endpoint is set).
        "prometheus-client",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-grpc",
    }
)

# One entry per image; each has a runtime-<service> stage in deploy/docker/Dockerfile.
SERVICES: dict[str, frozenset[str]] = {
    # Decodes untrusted audio (soundfile; ffmpeg comes from Debian), resamples (scipy), calls Triton.
    "gateway": COMMON | {"numpy", "scipy", "soundfile", "tritonclient", "boto3"},
    # Triton through PyTriton (its tritonserver binary ships in the wheel) hosting PANNs CNN14 in torch;
    # soundfile for bench.embedder_engine, which can run in the pod against its GPU.
    "embedder": COMMON | {"numpy", "scipy", "soundfile", "torch", "nvidia-pytriton", "tritonclient"},
    # Milvus through pymilvus. milvus-lite, the embedded file mode, is not asked for: pods talk to a server.
    "search": COMMON | {"numpy", "pymilvus"},
    "catalog": COMMON | {"pymysql"},
}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRAS = re.compile(r"\[[^\]]*\]")
# name[extras]==version[+local] [; marker]
_LOCKED = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*(?P<version>[^\s;+]+)(?:\+[^\s;]*)?"
    r"\s*(?P<marker>;.*)?$"
)


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(pyproject: Path) -> dict:
    with pyproject.open("rb") as file:
        return tomllib.load(file)["project"]


def project_dependencies(pyproject: Path) -> dict[str, str]:
    """pyproject.toml's [project].dependencies and its `s3` extra, keyed by normalised name."""
    by_name: dict[str, str] = {}
    project = _project(pyproject)
    for requirement in [*project["dependencies"], *project.get("optional-dependencies", {}).get("s3", [])]:
        match = _NAME.match(requirement)
        if match is None:
            raise ValueError(f"cannot read a name from the dependency {requirement!r}")
        by_name[normalise(match.group(1))] = requirement.strip()
    return by_name


def requirements_for(service: str, pyproject: Path) -> list[str]:
    """The pinned project dependencies `service` needs; fails if one of them left pyproject.toml."""
    dependencies = project_dependencies(pyproject)
    wanted = sorted(normalise(name) for name in SERVICES[service])
    missing = [name for name in wanted if name not in dependencies]
    if missing:
        raise KeyError(
            f"{service} needs {', '.join(missing)}, which {pyproject} no longer lists in "
            "[project].dependencies; update deploy/docker/requirements.py"
        )
    return [dependencies[name] for name in wanted]


def locked_pins(lock: Path) -> dict[str, str]:
    """`name==version` pins of a pip-freeze or pip-compile lock, keyed by normalised name.

    Options (-e, --hash, --index-url), comments and lines without `==` are skipped. A local version label
    (+cpu) is dropped: it names one build of a release, and `==2.13.0` admits every build of 2.13.0.
    """
    pins: dict[str, str] = {}
    for raw in lock.read_text().replace("\\\n", " ").splitlines():
        line = raw.split(" #", 1)[0].split(" --hash", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = _LOCKED.match(line)
        if match is None:
            continue
        pin = f"{match.group('name')}=={match.group('version')}"
        if match.group("marker"):
            pin = f"{pin} {match.group('marker').strip()}"
        pins[normalise(match.group("name"))] = pin
    return pins


def constraints(pyproject: Path, lock: Path | None = None) -> list[str]:
    """Every project dependency as a constraint (pip refuses extras there), the lock's pins winning."""
    by_name = {name: _EXTRAS.sub("", spec) for name, spec in project_dependencies(pyproject).items()}
    if lock is not None and lock.is_file():
        itself = normalise(_project(pyproject)["name"])
        by_name.update({name: pin for name, pin in locked_pins(lock).items() if name != itself})
    return [by_name[name] for name in sorted(by_name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", nargs="?", choices=sorted(SERVICES))
    parser.add_argument("--constraints", action="store_true", help="all project dependencies, no extras")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--lock", type=Path, default=Path("requirements.lock"), help="used if it exists")
    args = parser.parse_args(argv)
    if args.constraints == (args.service is not None):
        parser.error("give either a service or --constraints")
    try:
        if args.constraints:
            lines = constraints(args.pyproject, args.lock)
        else:
            lines = requirements_for(args.service, args.pyproject)
    except (KeyError, ValueError) as error:
        print(f"requirements.py: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
