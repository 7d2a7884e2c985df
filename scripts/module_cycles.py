#!/usr/bin/env python3
"""Import cycles between the library's top-level modules (crates/vgg/src/*).

Every `crate::X` path in a module's files (comments and doc comments left out) is an edge
from that module to X. Prints the edges, then any cycle, and exits 1 if there is one:

    python3 scripts/module_cycles.py
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "crates/vgg/src"


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.rs")):
        here = module_of(path)
        if here == "lib":
            continue
        graph.setdefault(here, set())
        for line in path.read_text().splitlines():
            code = line.split("//", 1)[0]
            for target in re.findall(r"\bcrate::(\w+)", code):
                if target != here:
                    graph[here].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, seen = [], set()

    def visit(node: str, stack: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                cycle = stack[stack.index(nxt):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle + [nxt])
            elif len(stack) < len(graph):
                visit(nxt, stack + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def main() -> int:
    graph = edges()
    for module in sorted(graph):
        print(f"{module:>9} -> {', '.join(sorted(graph[module])) or '-'}")
    found = cycles(graph)
    for cycle in found:
        print("cycle: " + " -> ".join(cycle))
    print(f"{len(found)} cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
