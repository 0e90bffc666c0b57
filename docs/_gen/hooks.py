"""MkDocs hooks: the pages made at build time from files outside ``docs/``.

- ``index.md``: README.md (the home page), its links into ``docs/`` made relative to the site;
- ``changelog.md``: CHANGELOG.md;
- ``gallery.md``: one section per example script in ``examples/`` (its docstring, how to run
  it, and the figures and tables it writes to ``examples/output/``);
- ``benchmark_results.md``: one section per benchmark script in ``benchmarks/`` (its docstring
  and the tables and plots it writes to ``benchmarks/output/``, included as they are);
- the figures and raw outputs themselves, under ``assets/examples/`` and ``assets/benchmarks/``.

Pages in ``docs/`` link to files outside it the way GitHub reads them (``../CHANGELOG.md``,
``../examples/output/x.png``, ``../benchmarks/output/nls.md``, ``../examples/hig_toy.py``,
``../benchmarks/bench_nls.py``); ``on_page_markdown`` rewrites those links to the site's copies
(a script's link to its section of the gallery or of the results), so one link works in both
places. Any other link that leaves
``docs/`` stays as written and fails the strict build.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES, BENCHMARKS = ROOT / "examples", ROOT / "benchmarks"
ASSETS = {"examples/output": "assets/examples", "benchmarks/output": "assets/benchmarks"}
_IMAGES = (".png", ".svg", ".jpg", ".jpeg", ".gif")
_LINK = re.compile(r"(\]\()(?P<target>[^)\s]+)(\))")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


# ---------------------------------------------------------------- link rewriting
def _site_target(target: str, from_root: bool) -> str:
    """The site's path for a link written for GitHub (from the repository root or docs/)."""
    path, sep, anchor = target.partition("#")
    if "://" in path or path.startswith("mailto:") or not path:
        return target
    if from_root:
        if path.startswith("docs/"):
            return path[len("docs/"):] + sep + anchor
        path = "../" + path
    if not path.startswith("../"):
        return target
    rel = path[len("../"):]
    if rel == "README.md":
        return "index.md" + sep + anchor
    if rel == "CHANGELOG.md":
        return "changelog.md" + sep + anchor
    if rel.startswith("examples/") and rel.endswith(".py") and rel.count("/") == 1:
        return f"gallery.md#example-{Path(rel).stem}"
    if rel.startswith("benchmarks/bench_") and rel.endswith(".py") and rel.count("/") == 1:
        return f"benchmark_results.md#{Path(rel).stem}"
    for src, dst in ASSETS.items():
        if rel.startswith(src + "/"):
            name = rel[len(src) + 1:]
            if src == "benchmarks/output" and name.endswith(".md"):
                return "benchmark_results.md#" + _slug(name)
            return f"{dst}/{name}"
    return target


def _rewrite_links(markdown: str, from_root: bool) -> str:
    """Rewrite the links of ``markdown`` outside code blocks."""
    out, fence = [], None
    for line in markdown.splitlines(keepends=True):
        m = _FENCE.match(line)
        if m:
            fence = None if fence and m.group(1).startswith(fence) else (fence or m.group(1))
        if fence is None:
            def sub(mm: re.Match) -> str:
                return mm.group(1) + _site_target(mm["target"], from_root) + mm.group(3)
            line = _LINK.sub(sub, line)
        out.append(line)
    return "".join(out)


def _slug(name: str) -> str:
    return "output-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _demote(markdown: str, levels: int) -> str:
    """Demote every heading outside code blocks by ``levels``."""
    out, fence = [], None
    for line in markdown.splitlines():
        m = _FENCE.match(line)
        if m:
            fence = None if fence and m.group(1).startswith(fence) else (fence or m.group(1))
        if fence is None and line.startswith("#"):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


# ---------------------------------------------------------------- generated pages
def _gallery() -> str:
    outputs = sorted(p for p in (EXAMPLES / "output").glob("*") if p.is_file())
    scripts = sorted(p for p in EXAMPLES.glob("*.py") if p.name != "run_all.py")
    lines = ["# Gallery", "",
             "The examples in `examples/`, with the figures and tables they write to "
             "`examples/output/`. `make demo` runs them all (`examples/run_all.py`); each runs "
             "alone as `python examples/NAME.py` (`--help` lists its options). The figures here "
             "are the ones committed with the code.", ""]
    claimed: set[Path] = set()
    for script in scripts:
        source = script.read_text(encoding="utf-8")
        mine = [p for p in outputs if p.name.startswith(script.stem) or p.name in source]
        claimed.update(mine)
        doc = _docstring(script)
        title, _, body = doc.partition("\n")
        lines += [f"## {title.strip() or script.stem} {{ #example-{script.stem} }}", "",
                  f"`python examples/{script.name}`", "", body.strip(), ""]
        lines += _outputs(mine, "examples/output", "assets/examples")
        lines += [f'??? note "Source: examples/{script.name}"', "",
                  "    ```python", *("    " + ln for ln in source.splitlines()), "    ```", ""]
    rest = [p for p in outputs if p not in claimed]
    if rest:
        lines += ["## Other outputs", "", *_outputs(rest, "examples/output", "assets/examples")]
    return "\n".join(lines) + "\n"


def _outputs(paths: list[Path], src: str, dst: str) -> list[str]:
    lines = []
    for p in paths:
        if p.suffix in _IMAGES:
            lines += [f"![{p.name}]({dst}/{p.name})", "", f"*`{src}/{p.name}`*", ""]
        elif p.suffix == ".md":
            lines += [f'### `{src}/{p.name}` {{ #{_slug(p.name)} }}', "",
                      _demote(p.read_text(encoding="utf-8"), 3), ""]
        else:
            lines += [f"- raw output: [`{src}/{p.name}`]({dst}/{p.name})", ""]
    return lines


def _benchmark_results() -> str:
    outputs = sorted(p for p in (BENCHMARKS / "output").glob("*") if p.is_file())
    scripts = sorted(BENCHMARKS.glob("bench_*.py"))
    lines = ["# Benchmark results", "",
             "The tables and plots in `benchmarks/output/`, as the last run of each script wrote "
             "them (`make bench` runs them all; `benchmarks/run_all.py`). They are measured on "
             "the project's shared 2-core machine, so read the ratios against the peer measured "
             "in the same run, not the absolute times. The targets and verdicts are on "
             "[Targets and verdicts](benchmarks.md).", ""]
    claimed: set[Path] = set()
    for script in scripts:
        source = script.read_text(encoding="utf-8")
        mine = [p for p in outputs if p not in claimed
                and (p.name in source or p.stem.startswith(script.stem)
                     or p.stem.startswith(script.stem[len("bench_"):]))]
        if not mine:
            continue
        claimed.update(mine)
        title = _docstring(script).partition("\n")[0].strip() or script.stem
        lines += [f"## {script.stem}: {title} {{ #{script.stem} }}", "",
                  f"`python benchmarks/{script.name}`", ""]
        lines += _outputs(mine, "benchmarks/output", "assets/benchmarks")
    rest = [p for p in outputs if p not in claimed]
    if rest:
        lines += ["## Other outputs", "", *_outputs(rest, "benchmarks/output", "assets/benchmarks")]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- MkDocs events
def on_files(files: Files, config) -> Files:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    pages = {
        "index.md": _rewrite_links(readme, from_root=True),
        "changelog.md": _rewrite_links(changelog, from_root=True),
        "gallery.md": _gallery(),
        "benchmark_results.md": _benchmark_results(),
    }
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    for src, dst in ASSETS.items():
        for p in sorted((ROOT / src).glob("*")):
            if p.is_file() and p.suffix != ".md":     # tables are included in the pages
                files.append(File.generated(config, f"{dst}/{p.name}", abs_src_path=str(p)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.generated_by is not None or "/" in page.file.src_uri:
        return markdown        # made above (links already rewritten), or not at the top of docs/
    return _rewrite_links(markdown, from_root=False)
