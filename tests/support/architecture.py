"""The architecture checker: an import graph of the project built with ``ast``, and the rules on it.

Nothing here names this repository's modules: :class:`Policy` says which packages exist, which modules
are pure and what a pure module may not touch, and :func:`check` applies it to any source root. The
policy of ota-sim lives in ``tests/test_architecture.py``; ``tests/test_architecture_checker.py`` runs
the same :func:`check` on small package trees written to ``tmp_path``.

Terms:

* A module's **runtime imports** are its ``import`` statements outside ``if TYPE_CHECKING:`` bodies
  (an ``else:`` branch runs, so it counts), including imports inside functions. Relative imports are
  resolved against the module's package; ``from pkg import name`` imports the module ``pkg.name`` when
  that file exists, else the package ``pkg``. Importing ``a.b.c`` also runs ``a`` and ``a.b``.
* An **I/O module** is a project module that imports a forbidden module at run time or uses a
  forbidden name (``open``, ``datetime.now``, ...), see :func:`io_reason`.
* A **pure** module imports no forbidden module, uses no forbidden name, and reaches no I/O module
  through any chain of project-internal runtime imports.
"""

from __future__ import annotations

import ast
import builtins
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass(frozen=True)
class Policy:
    """What the rules need to know about a project; every name is a dotted module name or prefix."""

    applications: tuple[str, ...]
    lab: str
    protocols: str
    # Every module under these packages is pure unless listed in ``pure_opt_out``.
    pure_by_default: tuple[str, ...]
    pure_opt_out: frozenset[str]
    # Pure modules elsewhere, listed one by one; each must exist.
    pure_listed: frozenset[str]
    # A pure module imports none of these (a dotted entry forbids that submodule only).
    forbidden_in_pure: frozenset[str]
    # A pure module calls or references none of these (a prefix forbids what is under it) ...
    forbidden_uses: Mapping[str, str]
    # ... except these.
    allowed_uses: frozenset[str]
    # (importing package, imported module or package): the only imports between applications.
    allowed_cross_imports: frozenset[tuple[str, str]]
    # Which modules may import smpplib.
    smpplib_modules: frozenset[str]
    # Modules under this prefix import none of ``forbidden_in_virtual``.
    virtual: str
    forbidden_in_virtual: frozenset[str]

    @property
    def packages(self) -> tuple[str, ...]:
        return (self.protocols, *self.applications, self.lab)


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted name: a module, or ``module.attribute`` for an external from-import
    line: int


@dataclass(frozen=True)
class Use:
    name: str  # qualified: ``datetime.datetime.now``, ``builtins.open``
    line: int


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[Import] = field(default_factory=list)
    uses: list[Use] = field(default_factory=list)


@dataclass(frozen=True)
class Violation:
    module: str
    key: str  # rule and what, stable across edits (no line): "pure: reaches a.b", "pure: uses time.time"
    where: str  # path:line
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.module} {self.detail}"


# ---------------------------------------------------------------------------------------------------
# Reading the source


def discover(root: Path, packages: tuple[str, ...]) -> dict[str, Module]:
    """Every ``*.py`` under the top-level ``packages`` of ``root``, by dotted name."""
    found: dict[str, Module] = {}
    for package in packages:
        base = root / package
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            is_package = relative.name == "__init__"
            parts = relative.parts[:-1] if is_package else relative.parts
            found[".".join(parts)] = Module(".".join(parts), path, is_package)
    for module in found.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        module.imports = list(_runtime_imports(tree, module, found))
        module.uses = list(_uses(tree, module, found))
    return found


def is_type_checking_test(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``; not ``not TYPE_CHECKING`` nor ``X or TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run: ``if TYPE_CHECKING:`` bodies are left out, their ``else`` kept."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and is_type_checking_test(node.test):
            stack.extend(reversed(node.orelse))
        else:
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _from_base(node: ast.ImportFrom, module: Module) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def _runtime_imports(tree: ast.AST, module: Module, project: Mapping[str, Module]) -> Iterator[Import]:
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in project or not _is_project_name(base, project):
                    yield Import(candidate, node.lineno)  # a submodule, or an external name
                else:
                    yield Import(base, node.lineno)  # an attribute of a project module


def _is_project_name(name: str, project: Mapping[str, Module]) -> bool:
    return name in project or any(other.startswith(name + ".") for other in project)


def _aliases(tree: ast.AST, module: Module, project: Mapping[str, Module]) -> dict[str, str]:
    """Local name -> the qualified name it is bound to by a runtime import."""
    bound: dict[str, str] = {}
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    bound[head] = head
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module)
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    return bound


def _bound_in(scope: ast.AST) -> set[str]:
    """Names a scope binds itself (parameters, assignments, nested definitions), not its inner scopes'."""
    names: set[str] = set()
    if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        arguments = scope.args
        every = [
            *arguments.posonlyargs,
            *arguments.args,
            *arguments.kwonlyargs,
            arguments.vararg,
            arguments.kwarg,
        ]
        names.update(argument.arg for argument in every if argument is not None)
    body = getattr(scope, "body", [])
    stack: list[ast.AST] = list(body) if isinstance(body, list) else [body]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))
    return names


def _uses(tree: ast.Module, module: Module, project: Mapping[str, Module]) -> Iterator[Use]:
    """Every qualified name the module's runtime code loads: ``dt.datetime.now`` -> ``datetime.datetime.now``.

    An attribute chain is reported once, whole (``sys.stdout.write``, not also ``sys.stdout``). A name
    the code binds itself hides a builtin of that name in its scope (a method called ``open`` does not
    hide the builtin from the module's functions), and a function's own name hides an import's.
    """
    aliases = _aliases(tree, module, project)
    module_scope = frozenset(_bound_in(tree) - set(aliases))
    yield from _scan(tree, aliases, module_scope, module_scope)


def _scan(
    node: ast.AST, aliases: Mapping[str, str], visible: frozenset[str], enclosing: frozenset[str]
) -> Iterator[Use]:
    """``visible``: names bound in the scopes seen here; ``enclosing``: those a nested function sees."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        visible = enclosing = enclosing | _bound_in(node)
    elif isinstance(node, ast.ClassDef):
        visible = visible | _bound_in(node)  # a class body's names are not seen by its methods
    qualified = _qualify(node, aliases, visible)
    if qualified is not None:
        yield Use(qualified, getattr(node, "lineno", 0))
        return  # a whole chain of names: nothing inside it to report apart
    if isinstance(node, ast.If) and is_type_checking_test(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _scan(child, aliases, visible, enclosing)


def _qualify(node: ast.AST, aliases: Mapping[str, str], shadowed: frozenset[str]) -> str | None:
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        if node.id in shadowed:
            return None
        if node.id in aliases:
            return aliases[node.id]
        return f"builtins.{node.id}" if node.id in BUILTIN_NAMES else None
    if isinstance(node, ast.Attribute):
        base = _qualify(node.value, aliases, shadowed)
        return None if base is None else f"{base}.{node.attr}"
    return None


# ---------------------------------------------------------------------------------------------------
# The rules


def under(name: str, prefixes: Iterable[str]) -> str | None:
    """The longest entry of ``prefixes`` that ``name`` is, or lies under (``a.b.c`` is under ``a.b``)."""
    matches = [prefix for prefix in prefixes if name == prefix or name.startswith(prefix + ".")]
    return max(matches, key=len) if matches else None


def pure_modules(project: Mapping[str, Module], policy: Policy) -> set[str]:
    by_default = {name for name in project if under(name, policy.pure_by_default)}
    return (by_default - policy.pure_opt_out) | (policy.pure_listed & set(project))


def configuration_errors(project: Mapping[str, Module], policy: Policy) -> list[str]:
    """Entries of the lists that name no module, or that say nothing (so that the lists cannot rot)."""
    by_default = " and ".join(policy.pure_by_default)
    errors: list[str] = []
    for name in sorted(policy.pure_listed):
        if name not in project:
            errors.append(
                f"PURE_APPLICATION_MODULES lists {name}, which does not exist: delete or rename the entry"
                f" (a module under {by_default} is pure by default and needs none)"
            )
        elif under(name, policy.pure_by_default):
            errors.append(
                f"PURE_APPLICATION_MODULES lists {name}, which is pure by default: delete the entry"
            )
    for name in sorted(policy.pure_opt_out):
        if name not in project:
            errors.append(f"PURE_OPT_OUT lists {name}, which does not exist: delete the entry")
        elif not under(name, policy.pure_by_default):
            errors.append(f"PURE_OPT_OUT lists {name}, which is not under {by_default}: delete the entry")
    return errors


def _forbidden_import(module: Module, forbidden: frozenset[str]) -> Iterator[tuple[Import, str]]:
    for imported in module.imports:
        entry = under(imported.target, forbidden)
        if entry is not None:
            yield imported, entry


def _forbidden_uses(module: Module, policy: Policy) -> Iterator[tuple[Use, str]]:
    for use in module.uses:
        if under(use.name, policy.allowed_uses):
            continue
        entry = under(use.name, frozenset(policy.forbidden_uses))
        if entry is not None:
            yield use, entry


def io_reason(module: Module, policy: Policy) -> str | None:
    """Why ``module`` does I/O (its first forbidden import or use), or None."""
    for imported, entry in _forbidden_import(module, policy.forbidden_in_pure):
        return f"imports {entry} at {module.path.name}:{imported.line}"
    for use, _ in _forbidden_uses(module, policy):
        return f"uses {use.name} at {module.path.name}:{use.line}"
    return None


def internal_edges(module: Module, project: Mapping[str, Module]) -> Iterator[tuple[str, int]]:
    """The project modules that importing ``module`` runs directly (with the importing line)."""
    for imported in module.imports:
        parts = imported.target.split(".")
        for end in range(1, len(parts) + 1):
            name = ".".join(parts[:end])
            if name in project and name != module.name:
                yield name, imported.line


@dataclass
class Analysis:
    """A source tree read once, with what every rule needs about it."""

    root: Path
    policy: Policy
    project: dict[str, Module]
    pure: set[str]
    io: dict[str, str]  # I/O module -> why

    @classmethod
    def of(cls, root: Path, policy: Policy) -> Analysis:
        project = discover(root, policy.packages)
        io = {name: reason for name, module in project.items() if (reason := io_reason(module, policy))}
        return cls(root, policy, project, pure_modules(project, policy), io)

    def io_chains(self, start: str) -> Iterator[tuple[list[str], int]]:
        """The shortest import chain from ``start`` to each I/O module it reaches, with the first edge's line.

        The search stops at an I/O module: what lies behind it is reached through it anyway.
        """
        first_line: dict[str, int] = {}
        parent: dict[str, str] = {}
        queue: deque[str] = deque([start])
        seen = {start}
        while queue:
            current = queue.popleft()
            for target, line in internal_edges(self.project[current], self.project):
                if target in seen:
                    continue
                seen.add(target)
                parent[target] = current
                first_line[target] = line if current == start else first_line[current]
                if target in self.io:
                    chain = [target]
                    while chain[-1] != start:
                        chain.append(parent[chain[-1]])
                    yield list(reversed(chain)), first_line[target]
                else:
                    queue.append(target)

    def violations(self, name: str) -> list[Violation]:
        """What module ``name`` breaks, one violation per key (the first place it happens)."""
        policy, module = self.policy, self.project[name]
        where = module.path.relative_to(self.root).as_posix()
        package = name.split(".")[0]
        found: dict[str, Violation] = {}

        def add(key: str, line: int, detail: str) -> None:
            found.setdefault(key, Violation(name, key, f"{where}:{line}", detail))

        if name in self.pure:
            for imported, entry in _forbidden_import(module, policy.forbidden_in_pure):
                add(f"pure: imports {entry}", imported.line, f"is pure but imports {imported.target}")
            for use, entry in _forbidden_uses(module, policy):
                add(
                    f"pure: uses {use.name}",
                    use.line,
                    f"is pure but uses {use.name}: {policy.forbidden_uses[entry]}",
                )
            for chain, line in self.io_chains(name):
                detail = f"is pure but reaches I/O: {' -> '.join(chain)} ({self.io[chain[-1]]})"
                add(f"pure: reaches {chain[-1]}", line, detail)

        allowed = {target for source, target in policy.allowed_cross_imports if source == package}
        for imported in module.imports:
            target_package = imported.target.split(".")[0]
            if package == policy.protocols and target_package in (*policy.applications, policy.lab):
                add(
                    f"layers: imports {target_package}",
                    imported.line,
                    f"imports the application {imported.target}",
                )
            if package in policy.applications and target_package == policy.lab:
                add(
                    f"layers: imports {policy.lab}",
                    imported.line,
                    f"imports the lab runner ({imported.target})",
                )
            if (
                package in policy.applications
                and target_package in policy.applications
                and target_package != package
                and not under(imported.target, allowed)
            ):
                detail = (
                    f"imports the application module {imported.target}"
                    f" (allowed across applications: {sorted(policy.allowed_cross_imports)})"
                )
                add(f"layers: imports {imported.target}", imported.line, detail)
            if under(name, (policy.virtual,)) and under(imported.target, policy.forbidden_in_virtual):
                add(
                    f"virtual: imports {imported.target}",
                    imported.line,
                    f"is virtual-time but imports {imported.target}",
                )
            if target_package == "smpplib" and name not in policy.smpplib_modules:
                add(
                    "smpplib: imports smpplib",
                    imported.line,
                    f"imports smpplib; only {sorted(policy.smpplib_modules)} may",
                )
        return list(found.values())


def check(root: Path, policy: Policy) -> list[Violation]:
    """Every violation in the source tree at ``root``; raises if the policy's lists name missing modules."""
    analysis = Analysis.of(root, policy)
    errors = configuration_errors(analysis.project, policy)
    if errors:
        raise ValueError("\n".join(errors))
    return [violation for name in analysis.project for violation in analysis.violations(name)]
