"""How the package reads: module sizes, longest functions, imports inside functions, and how
many places define each contract.

    python benchmarks/code_structure.py              # the working tree
    python benchmarks/code_structure.py --rev 0acf8c2  # any commit, read through git

The contracts are file names and names of functions that must have one owner; a count above one
means the contract is spelled in several places (issue 13). Figures go to
``results/code_structure[_<rev>].json``.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
from collections import Counter
from pathlib import Path

from _common import record

REPO = Path(__file__).resolve().parents[1]

#: File names the pipeline writes or reads; each should be spelled in one module.
FILE_NAME_CONTRACTS = (
    "summary.csv",
    "best_params.json",
    "per_task.csv",
    "task_outcomes.csv",
    "reward_distribution.csv",
    "reward_vs_params.png",
    "reward_distribution.png",
    "per_task_variance.png",
    "_failures.jsonl",
    "_aggregate_metrics.json",
    "manifest.json",
)

#: Logic that must have one owner: a regular expression for its definitions.
LOGIC_CONTRACTS = {
    "deep merge of dicts": r"^def _?(deep_)?merge\(",
    "configuration label": r"^def \w*(config|params)_label\(",
    "error wrapper for command lines": r"^def \w*guard\w*\(",
    "+key=value parser": r"^(def parse_overrides\(|class _Parser\()",
    "rollout text of a response": r"^def (output_text|final_text|joined_output_text)\(",
    "server discovery": r"^def discover\(",
    "collect command": r"^\s*def collect_command\(",
    "metric field list": r"^_?METRIC_FIELDS\s*=",
}


def tracked_files(rev: str | None) -> dict[str, str]:
    """Product files (src/, rules/, scripts/, Snakefile) as {path: text}, at ``rev`` or on disk."""
    roots = ("src/rollsweep", "rules", "scripts", "Snakefile")
    if rev is None:
        paths = [p for root in roots for p in _walk(REPO / root)]
        return {str(p.relative_to(REPO)): p.read_text() for p in paths}
    listing = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", rev, "--", *roots],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    wanted = [p for p in listing if p.endswith((".py", ".smk")) or p == "Snakefile"]
    return {
        path: subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:{path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for path in wanted
    }


def _walk(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix in (".py", ".smk"))


def function_spans(tree: ast.AST) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function and method."""
    spans: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                spans.append((name, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return spans


def function_level_imports(tree: ast.AST) -> list[str]:
    """Modules imported inside a function body."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found += [alias.name for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom):
                    found.append(inner.module or ".")
    return found


def code_strings(path: str, text: str) -> list[str]:
    """The string literals of a file that are code, not documentation (docstrings left out)."""
    if not path.endswith(".py"):
        return re.findall(r"\"[^\"\n]*\"|'[^'\n]*'", text)
    tree = ast.parse(text)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def measure(files: dict[str, str]) -> dict:
    python = {path: text for path, text in files.items() if path.endswith(".py")}
    package = {p: t for p, t in python.items() if p.startswith("src/")}
    sizes = {path: len(text.splitlines()) for path, text in package.items()}
    functions, inner_imports = [], Counter()
    for path, text in package.items():
        tree = ast.parse(text)
        functions += [(f"{path}:{name}", length) for name, length in function_spans(tree)]
        for module in function_level_imports(tree):
            inner_imports[f"{path} -> {module}"] += 1
    functions.sort(key=lambda item: -item[1])
    literals = {path: code_strings(path, text) for path, text in files.items()}
    file_names = {
        name: sorted(path for path, strings in literals.items() if any(name in s for s in strings))
        for name in FILE_NAME_CONTRACTS
    }
    logic = {
        contract: sorted(
            path for path, text in files.items() if re.search(pattern, text, flags=re.MULTILINE)
        )
        for contract, pattern in LOGIC_CONTRACTS.items()
    }
    return {
        "modules": len(sizes),
        "lines": sum(sizes.values()),
        "largest_modules": sorted(sizes.items(), key=lambda item: -item[1])[:10],
        "modules_over_400_lines": sum(size > 400 for size in sizes.values()),
        "longest_functions": functions[:10],
        "functions_over_60_lines": sum(length > 60 for _, length in functions),
        "function_level_imports": sorted(inner_imports),
        "file_name_contracts": file_names,
        "logic_contracts": logic,
    }


def show(figures: dict) -> None:
    print(f"{figures['modules']} modules, {figures['lines']} lines")
    print(f"modules over 400 lines: {figures['modules_over_400_lines']}")
    for path, size in figures["largest_modules"]:
        print(f"  {size:5d}  {path}")
    print(f"functions over 60 lines: {figures['functions_over_60_lines']}")
    for name, length in figures["longest_functions"]:
        print(f"  {length:5d}  {name}")
    print(f"imports inside functions: {len(figures['function_level_imports'])}")
    for entry in figures["function_level_imports"]:
        print(f"         {entry}")
    print("places that define each contract:")
    for table in ("file_name_contracts", "logic_contracts"):
        for contract, places in figures[table].items():
            print(f"  {len(places):2d}  {contract}: {', '.join(places)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", help="a git revision to measure instead of the working tree")
    args = parser.parse_args()
    figures = measure(tracked_files(args.rev))
    show(figures)
    name = "code_structure" if args.rev is None else f"code_structure_{args.rev}"
    record(name, {"rev": args.rev or "working tree", **figures})


if __name__ == "__main__":
    main()
