"""Every ```python block of README.md and docs/*.md runs, so the docs cannot drift from the code.

Rules (also in docs/DEVELOPING.md, "The documentation site and its code blocks"):

- The blocks of one page run in order in one namespace, like a notebook: a later block may use
  what an earlier one defined. Each page runs in a fresh namespace, in a temporary working
  directory, with matplotlib on its non-interactive backend.
- A block that imports a package that is not installed (torch, deepwave, hypothesis,
  matplotlib; ``newtonkit_torch`` needs torch) ends its page's run there: the blocks before it
  have run and passed, and the page is reported as skipped with the package named. Pages put
  their NumPy blocks first.
- A function named ``test_*`` that a page defines (a hypothesis property, say) is called once
  the page's blocks have run.
- An HTML comment on the line before a block gives it a directive (invisible on the rendered
  page and on GitHub):

  ``<!-- docs-test: skip REASON -->``
      the block is not run. Rare; the reason says why (it needs hardware CI lacks, say).
  ``<!-- docs-test: ranks N -->``
      the block is an SPMD script: it runs as its own program in N processes, with the
      environment ``torchrun`` would set (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
      ``MASTER_PORT``, ``LOCAL_RANK``), and must exit 0 on every rank. It does not share the
      page's namespace.

A slow block is made fast by a small, stated problem size in the block itself, not skipped.

Run: ``NEWTONKIT_DOCS_TEST=1 python -m pytest -q tests/test_docs.py`` (.ci/run does; without the
variable only the fast checks run: every block compiles, and the runner itself bites).
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<what>\w+)\s*(?P<arg>.*?)\s*-->\s*$")
_IMPORT = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_][\w]*)", re.MULTILINE)
# Optional packages a block may import; newtonkit_torch is importable only with torch.
_OPTIONAL = {"torch": "torch", "newtonkit_torch": "torch", "deepwave": "deepwave",
             "hypothesis": "hypothesis", "matplotlib": "matplotlib"}
_RANKS_TIMEOUT_S = 300


@dataclass
class Block:
    page: str
    line: int            # 1-based line of the first code line
    code: str
    directive: str = ""  # "", "skip", "ranks"
    arg: str = ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def missing(self) -> list[str]:
        """The optional packages this block imports that are not installed."""
        need = {_OPTIONAL[m] for m in _IMPORT.findall(self.code) if m in _OPTIONAL}
        return sorted(p for p in need if importlib.util.find_spec(p) is None)


def code_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, with the docs-test directive before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(ROOT).as_posix()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent, info = m["fence"], len(m["indent"]), m["info"].strip()
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence)
                                      and set(lines[j].strip()) == {fence[0]}):
            j += 1
        if info.split(" ")[0].lower() in ("python", "py"):
            code = "\n".join(ln[indent:] if ln[:indent].strip() == "" else ln
                             for ln in lines[i + 1:j])
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            d = _DIRECTIVE.match(lines[k]) if k >= 0 else None
            blocks.append(Block(page, i + 2, textwrap.dedent(code),
                                d["what"] if d else "", d["arg"] if d else ""))
        i = j + 1
    return blocks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Appended to an SPMD block: end without the interpreter's teardown, which with torch 2.13 and
#: gloo sometimes aborts after the script has run (docs/distributed.md, "Exit").
_SPMD_EXIT = "import os, sys\nsys.stdout.flush()\nos._exit(0)\n"


def _run_ranks(block: Block, n: int, tmp_path: Path) -> None:
    """Run ``block`` as an SPMD script in ``n`` processes, as torchrun would start it."""
    script = tmp_path / f"block_{block.line}.py"
    script.write_text(block.code + "\n" + _SPMD_EXIT, encoding="utf-8")
    port = _free_port()
    env = dict(os.environ, WORLD_SIZE=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
                   [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    procs = [subprocess.Popen([sys.executable, str(script)], cwd=tmp_path,
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(n)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=_RANKS_TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: the {n} ranks did not finish in {_RANKS_TIMEOUT_S} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    bad = [(r, p.returncode, out) for r, (p, out) in enumerate(zip(procs, outs, strict=True))
           if p.returncode != 0]
    if bad:
        r, rc, out = bad[0]
        pytest.fail(f"{block.where}: rank {r} of {n} exited {rc}:\n{out[-3000:]}")


def run_page(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the blocks of one page (module docstring); returns a one-line summary."""
    blocks = code_blocks(path)
    if not blocks:
        pytest.skip("no python blocks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    ran, timings = 0, []
    for block in blocks:
        if block.directive == "skip":
            assert block.arg, f"{block.where}: a skipped block must say why"
            continue
        missing = block.missing()
        if missing:
            pytest.skip(f"{block.where} needs {', '.join(missing)} (ran {ran} of "
                        f"{len(blocks)} blocks before it)")
        t0 = time.perf_counter()
        if block.directive == "ranks":
            _run_ranks(block, int(block.arg), tmp_path)
        elif block.directive:
            pytest.fail(f"{block.where}: unknown docs-test directive {block.directive!r}")
        else:
            try:
                exec(compile(block.code, block.where, "exec"), namespace)
            except BaseException as exc:
                raise AssertionError(f"the block at {block.where} raised "
                                     f"{type(exc).__name__}: {exc}") from exc
        timings.append((time.perf_counter() - t0, block.where))
        ran += 1
    for name, obj in list(namespace.items()):
        if name.startswith("test_") and callable(obj):
            obj()
    slowest = max(timings, default=(0.0, ""))
    return f"{path.name}: {ran} blocks, slowest {slowest[0]:.1f} s at {slowest[1]}"


# The pages' blocks take about 20 s on an idle 2-core machine (torch and deepwave examples, an
# SPMD script in two processes), a third of the suite: they run in their own CI step
# (.ci/run), or with NEWTONKIT_DOCS_TEST=1; `make test` checks only that every block compiles.
RUN_BLOCKS = os.environ.get("NEWTONKIT_DOCS_TEST", "") not in ("", "0")


_WITH_BLOCKS = [p for p in PAGES if code_blocks(p)]


@pytest.mark.parametrize(
    "path", _WITH_BLOCKS if RUN_BLOCKS else [None],
    ids=[p.relative_to(ROOT).as_posix() for p in _WITH_BLOCKS] if RUN_BLOCKS else ["all-pages"])
def test_code_blocks_run(path: Path | None, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    if path is None:
        pytest.skip("the docs' code blocks run in their own CI step: "
                    "NEWTONKIT_DOCS_TEST=1 python -m pytest tests/test_docs.py")
    print(run_page(path, tmp_path, monkeypatch))


def test_runner_fails_skips_and_shares(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner bites: a raising block fails naming page and line; a block after a missing
    package skips; a skip directive without a reason fails; blocks of a page share names."""
    page = tmp_path / "page.md"
    fence = "`" * 3

    def write(*blocks: str | tuple[str, str]) -> None:
        """A page of ``code`` or ``(directive, code)`` blocks, text between them."""
        parts = []
        for b in blocks:
            directive, code = b if isinstance(b, tuple) else ("", b)
            parts += ["Some text.", "", directive, f"{fence}python", code, fence, ""]
        page.write_text("\n".join(parts), encoding="utf-8")

    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    write("x = 2", "assert x == 2")
    assert "2 blocks" in run_page(page, tmp_path, monkeypatch)
    write("x = 2", "raise ValueError('drifted')")
    with pytest.raises(AssertionError, match=r"page.md:\d+ raised ValueError: drifted"):
        run_page(page, tmp_path, monkeypatch)
    monkeypatch.setitem(_OPTIONAL, "nk_no_such_package", "nk_no_such_package")
    write("x = 2", "import nk_no_such_package", "raise ValueError('not reached')")
    with pytest.raises(pytest.skip.Exception, match="needs nk_no_such_package .ran 1 of 3"):
        run_page(page, tmp_path, monkeypatch)
    write(("<!-- docs-test: skip -->", "raise ValueError"))
    with pytest.raises(AssertionError, match="must say why"):
        run_page(page, tmp_path, monkeypatch)
    write(("<!-- docs-test: skip needs a GPU -->", "raise ValueError"), "y = 1")
    assert "1 blocks" in run_page(page, tmp_path, monkeypatch)
    write("def test_property():\n    raise AssertionError('property fails')")
    with pytest.raises(AssertionError, match="property fails"):
        run_page(page, tmp_path, monkeypatch)


def test_directives_are_known_and_blocks_parse() -> None:
    """Every block compiles and every directive is one this test knows, on every page."""
    for path in PAGES:
        for block in code_blocks(path):
            assert block.directive in ("", "skip", "ranks"), block.where
            if block.directive == "ranks":
                assert block.arg.isdigit() and int(block.arg) >= 1, block.where
            compile(block.code, block.where, "exec")
