"""Imports point one way: no module imports a higher layer, nor a sibling package of its own layer, and
no import cycle exists between modules (function-level imports count too). docs/architecture.md draws it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = {
    "ltr": REPO / "sidecar" / "ltr",
    "ltr_sidecar": REPO / "sidecar" / "ltr_sidecar",
    "ltr_operator": REPO / "operator" / "ltr_operator",
}

#: Bottom to top. A group may import its own modules and any group of a LOWER layer, nothing else.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ltr.contract", "ltr.v1"),
    ("ltr.kube",),
    ("ltr_sidecar.errors", "ltr_sidecar.stats"),
    ("ltr_sidecar.sampling", "ltr_sidecar.data"),
    ("ltr_sidecar.scheduling", "ltr_sidecar.engine", "ltr_sidecar.predictor.runtime"),
    ("ltr_sidecar.predictor.training",),
    ("ltr_sidecar.predictor.ops",),
    ("ltr_sidecar.server",),
    ("ltr_sidecar.devtools",),
    ("ltr_sidecar.bench",),
    ("ltr_operator",),
    ("ltr.cli",),
)
#: The operator image has no torch: it may use the shared contract, the Kubernetes client and the
#: generated API only.
OPERATOR_ALLOWED = ("ltr.contract", "ltr.kube", "ltr.v1", "ltr_operator")
#: Package roots that only re-export (they belong to the group of what they re-export).
ALIASES = {
    "ltr_sidecar.predictor": "ltr_sidecar.predictor.runtime",
    "ltr": "ltr.contract",
    "ltr_sidecar": "ltr_sidecar.errors",
}


def _modules() -> dict[str, Path]:
    out = {}
    for root in ROOTS.values():
        for f in root.rglob("*.py"):
            parts = f.relative_to(root.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if not name.startswith("ltr.v1"):
                out[name] = f
    assert len(out) > 60, "module discovery found too little"
    return out


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] in ROOTS}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module `name` denotes ("pkg.mod.attr" → "pkg.mod"), or None for a non-project name."""
    if name == "ltr.v1" or name.startswith("ltr.v1."):
        return "ltr.v1"  # generated stubs: a leaf
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _group(module: str) -> str:
    groups = [g for layer in LAYERS for g in layer]
    match = max((g for g in groups if module == g or module.startswith(g + ".")), key=len, default=None)
    return match or ALIASES.get(module, module)


def _layer(group: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if group in layer)


def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {t for n in _imports(p) if (t := _resolve(n, modules)) and t != m} for m, p in modules.items()}


def test_every_module_is_in_a_layer() -> None:
    groups = {g for layer in LAYERS for g in layer}
    unplaced = sorted(m for m in graph() if _group(m) not in groups)
    assert not unplaced, (
        f"modules outside every layer (add them to LAYERS and docs/architecture.md): {unplaced}"
    )


def test_imports_point_down() -> None:
    bad = []
    for mod, targets in graph().items():
        src = _group(mod)
        for target in targets:
            dst = _group(target)
            if src == dst:
                continue
            if src == "ltr_operator" and not target.startswith(OPERATOR_ALLOWED):
                bad.append(f"{mod} -> {target} (the operator may import only {OPERATOR_ALLOWED})")
            elif _layer(dst) >= _layer(src):
                bad.append(f"{mod} -> {target} ({dst} is not below {src})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    g = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_can_fail() -> None:
    """The rules catch what they are for (a guard against a test that can never fail)."""
    assert _layer(_group("ltr_sidecar.server.core")) > _layer(_group("ltr_sidecar.engine.client"))
    assert _group("ltr_sidecar.predictor") == "ltr_sidecar.predictor.runtime"
    g = graph()
    assert "ltr_sidecar.engine.client" in g["ltr_sidecar.server.core"]
    assert not any(t.startswith("ltr_sidecar") for t in g["ltr_operator.builders"])
