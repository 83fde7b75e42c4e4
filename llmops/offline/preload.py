"""Load, once and before the worker forks a process per stack, the libraries a program will use.

Most of a cold evaluation is importing: pulumi_aws and pulumi_kubernetes load each service's classes lazily, on
first use (about 1.5 s for ours), and every forked process would pay that again. So the worker reads the program's
source -- `__main__.py` and the modules of its own it imports, followed under the program directory, parsed and
never run -- and imports the library modules it names: `import pulumi_aws as aws` and `aws.eks.Cluster` load
`pulumi_aws.eks`. Only libraries are imported here: the program's own modules may read the stack's config when
imported (`config = pulumi.Config()` at the top of a module is common), so each stack's process imports those
itself, after its own config is set. A name this reading misses is still imported where the program uses it;
it only costs that process the time.
"""

from __future__ import annotations

import ast
import importlib
import types
from collections.abc import Iterable
from pathlib import Path

Reference = tuple[str, tuple[str, ...]]  # a library module, and the attributes named after it


def library_references(main: Path, root: Path) -> set[Reference]:
    """Every library module, with the attribute chains used on it, that `main` and the program modules it imports
    (found under `root`, the directory the program runs from) name."""
    root = root.resolve()
    found: set[Reference] = set()
    queue, seen = [main.resolve()], set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue  # the program's own run reports it
        package = _package_of(path, root)
        aliases: dict[str, Reference] = {}  # a name bound by an import of a library -> what it names
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = _local_files(alias.name, root)
                    if local:
                        queue.extend(local)
                        continue
                    top = alias.name.split(".")[0]
                    found.add((alias.name, ()))
                    aliases[alias.asname or top] = (alias.name, ()) if alias.asname else (top, ())
            elif isinstance(node, ast.ImportFrom):
                module = _absolute(node.module, node.level, package)
                if module is None:
                    continue
                local = _local_files(module, root)
                if local:
                    queue.extend(local)
                    for alias in node.names:
                        queue.extend(_local_files(f"{module}.{alias.name}", root))
                    continue
                for alias in node.names:
                    if alias.name != "*":
                        found.add((module, (alias.name,)))
                        aliases[alias.asname or alias.name] = (module, (alias.name,))
        for node in ast.walk(tree):
            chain = _attribute_chain(node)
            if chain and chain[0] in aliases:
                module, attributes = aliases[chain[0]]
                found.add((module, attributes + tuple(chain[1:])))
    return found


def preload(references: Iterable[Reference]) -> None:
    """Import each library module and follow its attribute chain through modules, so that a lazily imported
    submodule (`pulumi_aws.eks`) is loaded now. Anything that fails is left for the program to meet itself."""
    for module, attributes in sorted(references):
        try:
            target = importlib.import_module(module)
            for name in attributes:
                if not isinstance(target, types.ModuleType):
                    break
                target = getattr(target, name)
            if isinstance(target, types.ModuleType):
                getattr(target, "__name__")  # noqa: B009 - any attribute loads a lazy module
        except Exception:  # noqa: BLE001, S112 - not ours to report: the program meets it again where it matters
            continue


def _package_of(path: Path, root: Path) -> str:
    try:
        parts = path.relative_to(root).with_suffix("").parts
    except ValueError:
        return ""
    return ".".join(parts[:-1])


def _absolute(module: str | None, level: int, package: str) -> str | None:
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[:len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else [])) or None


def _local_files(module: str, root: Path) -> list[Path]:
    """The program's own files for `module` (and its parent packages), if it is one of the program's modules."""
    parts = module.split(".")
    files = []
    for depth in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:depth])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                files.append(candidate)
                break
        else:
            if depth == 1 and not base.is_dir():
                return []  # not the program's: a library (or nothing)
    return files


def _attribute_chain(node: ast.AST) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None for anything else."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not names:
        return None
    return [node.id, *reversed(names)]
