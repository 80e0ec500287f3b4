"""Check the package's shape: every import points down the layers, no module is over 500
lines, and no function is over 80 lines (a typer command's signature, its options, does not
count). Prints each offence; exit code 1 when there is one.

    python scripts/check_layout.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dsi_online"

LAYERS = (
    ("errors", "interrupts", "assumptions"),
    ("schedulers",),
    ("sim",),
    ("units",),
    ("studies",),
    ("measure",),
    ("pair",),
    ("real",),
    ("reports",),
    ("cli", "__main__", "__init__"),
)
"""Bottom to top: a module may import its own layer and the layers below it."""

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def layer(module: str) -> int:
    """The layer of `dsi_online.<module>` (by its first component)."""
    head = module.split(".")[0]
    for rank, names in enumerate(LAYERS):
        if head in names:
            return rank
    raise SystemExit(f"dsi_online.{module} is in no layer: add it to LAYERS")


def imports(tree: ast.Module) -> list[str]:
    """The dsi_online modules a module imports (anywhere in it), relative to the package."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dsi_online."):
            found.append((node.module or "").removeprefix("dsi_online."))
        elif isinstance(node, ast.Import):
            found += [
                a.name.removeprefix("dsi_online.")
                for a in node.names
                if a.name.startswith("dsi_online.")
            ]
    return found


def top_imports(tree: ast.Module) -> list[str]:
    """The dsi_online modules a module imports when it loads (not inside functions, not
    only for type checking): the edges an import cycle would be made of."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dsi_online."):
            found.append((node.module or "").removeprefix("dsi_online."))
    return found


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Import cycles among modules loaded at import time (depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines from its first statement after the signature to its end."""
    assert node.end_lineno is not None
    return node.end_lineno - node.body[0].lineno + 1


def offences() -> list[str]:
    found = []
    graph: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        module = ".".join(relative.parts)
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            found.append(f"{module}: {text.count(chr(10))} lines (at most {MAX_MODULE_LINES})")
        tree = ast.parse(text)
        graph[module.removesuffix(".__init__")] = top_imports(tree)
        own = layer(module)
        for imported in imports(tree):
            if layer(imported) > own:
                found.append(f"{module} imports dsi_online.{imported}, a higher layer")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = body_lines(node)
                if lines > MAX_FUNCTION_LINES:
                    found.append(
                        f"{module}.{node.name}: {lines} lines (at most {MAX_FUNCTION_LINES})"
                    )
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return found


def main() -> int:
    found = offences()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
