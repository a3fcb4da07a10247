"""Just enough of the Dockerfile and .dockerignore formats to check the images without building them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # the rest of the logical line, continuations joined
    line: int


@dataclass
class Stage:
    base: str  # the FROM image, or an earlier stage's name
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    from_stage: str | None


def instructions(dockerfile: Path) -> list[Instruction]:
    """The logical instructions: comments dropped, backslash continuations joined."""
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(dockerfile.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment line inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        text = " ".join(part.strip() for part in pending)
        pending = []
        keyword, _, arguments = text.partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip(), start))
    return result


def stages(dockerfile: Path, build_args: dict[str, str] | None = None) -> list[Stage]:
    """The stages in file order, each FROM's base expanded with the global ARGs (defaults, then `build_args`)."""
    found: list[Stage] = []
    global_args: dict[str, str] = {}
    for instruction in instructions(dockerfile):
        if instruction.keyword == "FROM":
            words = [word for word in instruction.arguments.split() if not word.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            found.append(Stage(base=expand(words[0], global_args), name=name))
        elif found:
            found[-1].instructions.append(instruction)
        elif instruction.keyword == "ARG":
            key, _, default = instruction.arguments.partition("=")
            value = (build_args or {}).get(key, default if "=" in instruction.arguments else None)
            if value is not None:
                global_args[key] = value
    return found


_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<modifier>:?[-+?][^}]*)?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand(text: str, variables: dict[str, str]) -> str:
    """$NAME, ${NAME} and ${NAME:?}/${NAME:-default}/${NAME:+word} as BuildKit expands them; unknown names stay."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        modifier = match.group("modifier") or ""
        value = variables.get(name)
        if modifier.lstrip(":").startswith("?"):
            if not value:
                raise ValueError(f"{name}: is not allowed to be unset or empty ({text})")
            return value
        if modifier.lstrip(":").startswith("-"):
            return value or modifier.lstrip(":")[1:]
        if modifier.lstrip(":").startswith("+"):
            return modifier.lstrip(":")[1:] if value else ""
        return match.group(0) if value is None else value

    return _VARIABLE.sub(replace, text)


def build_chain(all_stages: list[Stage], target: str | None = None) -> list[Stage]:
    """The stages an image is made of: the target (default the last) and its FROM ancestors, base first."""
    by_name = {stage.name: stage for stage in all_stages if stage.name}
    stage = by_name[target] if target else all_stages[-1]
    chain = [stage]
    while stage.base in by_name:
        stage = by_name[stage.base]
        chain.append(stage)
    return chain[::-1]


def reachable(all_stages: list[Stage], target: str | None = None) -> list[Stage]:
    """Every stage a build of `target` runs: its chain, and the chains of the stages its COPY --from names."""
    names = {stage.name for stage in all_stages if stage.name}
    found: list[Stage] = []
    pending = [build_chain(all_stages, target)]
    while pending:
        for stage in pending.pop():
            if any(stage is seen for seen in found):
                continue
            found.append(stage)
            pending.extend(build_chain(all_stages, c.from_stage) for c in copies(stage) if c.from_stage in names)
    return found


def last(chain: list[Stage], keyword: str) -> Instruction | None:
    """The instruction of that keyword that an image built from `chain` keeps (CMD, ENTRYPOINT, USER, ...)."""
    found = [i for stage in chain for i in stage.instructions if i.keyword == keyword]
    return found[-1] if found else None


def copies(stage: Stage) -> list[Copy]:
    result = []
    for instruction in stage.instructions:
        if instruction.keyword not in {"COPY", "ADD"}:
            continue
        words = shlex.split(instruction.arguments)
        flags = [word for word in words if word.startswith("--")]
        paths = [word for word in words if not word.startswith("--")]
        from_stage = next((flag.split("=", 1)[1] for flag in flags if flag.startswith("--from=")), None)
        result.append(Copy(tuple(paths[:-1]), paths[-1], from_stage))
    return result


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over slash-separated paths."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


class DockerIgnore:
    """Docker's rule: the last pattern that matches a path, or one of its parent folders, decides."""

    def __init__(self, path: Path) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line[1:].strip() if include else line
            self.rules.append((include, _pattern_regex(pattern.strip("/"))))

    def excludes(self, relative: str) -> bool:
        parts = relative.strip("/").split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for include, regex in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not include
        return excluded


def context_files(root: Path, source: str, ignore: DockerIgnore) -> list[str]:
    """The files a COPY source brings from the build context at `root`, after .dockerignore."""
    matches = sorted(root.glob(source)) if any(ch in source for ch in "*?[") else [root / source]
    files: list[str] = []
    for match in matches:
        if not match.exists():
            continue
        paths = [match] if match.is_file() else sorted(p for p in match.rglob("*") if p.is_file())
        for path in paths:
            relative = path.relative_to(root).as_posix()
            if not ignore.excludes(relative):
                files.append(relative)
    return files
