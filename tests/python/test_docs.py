"""Every code block in README.md and docs/*.md runs (or is checked), so the docs cannot rot.

One test per Markdown file (every ``docs/*.md`` is collected automatically); its blocks run in
order, in a fresh temporary directory per file. What happens to a block depends on its language:

``python``
    Written to a file (named by a first line ``# name.py``, else ``block_N.py``) and run in a fresh
    interpreter (this one: the shmcomm package and library the tests use are importable); it must
    exit 0 within the block's time limit (default 20 s).
``c``
    Compiled against ``include/`` and linked with the libshm the tests load. A block with ``main``
    is a program: it is run and must exit 0. A block without is a fragment: it is compiled as the
    body of a function (after ``#include <shmcomm.h>``, ``<stdio.h>``, ``<stdlib.h>``,
    ``<string.h>``), with ``-Wall -Wextra -Werror`` (unused variables allowed), and not run.
``bash``, ``sh``, ``shell``, ``console``
    Split into commands (``console``: only lines starting with ``$ ``; ``\\`` continuations joined;
    ``#`` comments dropped; ``&&``, ``;`` and ``|`` separate commands; leading ``VAR=value``
    assignments kept). Then, command by command:

    - ``python -m shmcomm ...``, ``python3 -m shmcomm ...`` and ``shmcomm ...`` are **run** with
      bash, where ``python``, ``python3`` and ``shmcomm`` mean this interpreter and package; they
      must exit 0. ``clean`` is run as ``clean --dry-run``: removing stale segments would disturb
      other processes on the machine (tests that leave stale segments on purpose).
    - ``python FILE ...`` is run when FILE is a file an earlier block of the same page saved (see
      ``save``); a repository file (``examples/``, ``benchmarks/``) must exist but is not run here
      (test_examples.py runs the examples; benchmarks are not tests).
    - ``pip install``: checked, not run: every ``.[extra]`` / ``shmcomm[extra]`` must be an extra
      of pyproject.toml and every ``-r FILE`` must exist.
    - Setup and build commands (venvs, ``meson``, ``ninja``, ``apt-get``, ``docker``, ``systemctl``,
      ``python -m pytest``, ... : the table ``NOT_RUN`` below, with the reason for each) are not
      run: they change the machine or take minutes. Any other command fails the test until it is
      classified here, so nothing in the docs goes unchecked by accident.
    - ``echo``, ``printf``, ``seq``, ``head``, ``grep``, ``wc`` may feed or filter a shmcomm command in
      a pipeline.
anything else (no tag, ``text``, ``json``, ``toml``, diagrams)
    Not code: not run.

Directives: HTML comments on the lines right above a block's opening fence, one or several::

    <!-- docs-test: skip REASON -->      never run (the reason is required)
    <!-- docs-test: background -->      started in the background: it keeps running while the next
                                          blocks run, until the next block that is not in the
                                          background has finished; then it gets Ctrl-C (SIGINT,
                                          SIGKILL 10 s later). It may not fail before that
    <!-- docs-test: until REGEX -->     for a block that runs until stopped (a subscriber loop):
                                          it runs until its output matches REGEX, then gets Ctrl-C;
                                          it passes if REGEX matched and nothing failed
    <!-- docs-test: save -->            python: only written to its file (``# name.py``) for a later
                                          shell block to run (``python name.py``)
    <!-- docs-test: requires MODULE --> skipped when MODULE cannot be imported (e.g. zmq)
    <!-- docs-test: timeout SECONDS --> another time limit for this block

Multi-process examples: put ``background`` on the side that must wait to be stopped (a publisher
loop), then the block that depends on it (a subscriber) right after. Channel names in the docs are
real names (``robot/pose``): after each page, a segment left behind whose channel name appears in
the page fails the test (and is removed).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import shmcomm
from shmcomm import _binding
from naming import REPO
from procs import child_env

DOC_FILES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
SHELL_LANGS = {"bash", "sh", "shell", "console"}
DEFAULT_TIMEOUT = 20.0

# Commands the docs may show that this test does not run, and why.
NOT_RUN = {
    "python3 -m venv": "creates a virtual environment",
    "python -m venv": "creates a virtual environment",
    ".": "activates a virtual environment",
    "source": "activates a virtual environment",
    "python -m pytest": "the test suite itself",
    "python3 -m pytest": "the test suite itself",
    "pytest": "the test suite itself",
    "meson": "builds the library (minutes; the C tests build it)",
    "ninja": "builds the library (the C tests build it)",
    "git": "fetches the sources",
    "cd": "changes directory in the reader's shell",
    "export": "sets the reader's environment",
    "apt-get": "installs system packages",
    "sudo": "needs root",
    "docker": "starts containers",
    "systemctl": "changes the machine's services",
    "loginctl": "changes the machine's login settings",
    "df": "machine-specific output",
    "ls": "machine-specific output",
    "ulimit": "changes the reader's shell limits",
    ".ci/run": "the CI run (the whole suite)",
}
PIPE_HELPERS = {"echo", "printf", "seq", "head", "grep", "wc"}
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(\w[\w-]*)\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    directives: Dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def timeout(self) -> float:
        return float(self.directives.get("timeout", DEFAULT_TIMEOUT))


def parse_blocks(path: Path) -> List[Block]:
    """The fenced code blocks of a Markdown file, with the docs-test directives right above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)(```+)\s*([\w+-]*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match.groups()
        directives: Dict[str, str] = {}
        j = i - 1
        while j >= 0 and DIRECTIVE.match(lines[j]):
            d = DIRECTIVE.match(lines[j])
            assert d is not None
            directives[d.group(1)] = d.group(2)
            j -= 1
        body = []
        k = i + 1
        while k < len(lines) and not re.match(rf"^\s*{fence}\s*$", lines[k]):
            body.append(lines[k][len(indent):] if lines[k].startswith(indent) else lines[k])
            k += 1
        assert k < len(lines), f"{path}:{i + 1}: code block never closed"
        for name in directives:
            assert name in {"skip", "background", "until", "save", "requires", "timeout"}, \
                f"{path}:{i + 1}: unknown docs-test directive {name!r}"
        if "skip" in directives:
            assert directives["skip"], f"{path}:{i + 1}: docs-test: skip needs a reason"
        blocks.append(Block(path, i + 1, lang.lower(), "\n".join(body) + "\n", directives))
        i = k + 1
    return blocks


# ---- running ------------------------------------------------------------------------------------

class Running:
    """A block's process, its output collected by a thread (so a chatty block never blocks)."""

    def __init__(self, block: Block, argv: List[str], cwd: Path, env: Dict[str, str]) -> None:
        self.block = block
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.output = b""
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            with self.changed:
                self.output += chunk
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def wait_for_output(self, pattern: str, timeout: float) -> bool:
        """True once the output matches pattern; False if the process ended or time ran out first."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self.changed:
            while not regex.search(self.text):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    return bool(regex.search(self.text))
                self.changed.wait(min(left, 0.5))
        return True

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def interrupt(self) -> Optional[int]:
        """Ctrl-C to the block's process group; SIGKILL if it has not ended 10 s later. The exit
        code, or None if it had to be killed."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            if self.wait(10) is None:
                self.kill()
                return None
        self.reader.join(10)
        return self.proc.returncode

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.reader.join(10)


def _library_path() -> Path:
    override = os.environ.get("SHMCOMM_LIBRARY")
    if override:
        return Path(override).resolve()
    for name in _binding._library_names():
        candidate = _binding._PACKAGE_DIR / name
        if candidate.exists():
            return candidate
    raise AssertionError("cannot find the libshm the tests use")


class Page:
    """Runs the blocks of one Markdown file, in order, in its own directory."""

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path = path
        self.workdir = workdir
        self.background: List[Running] = []
        self.saved: set = set()
        self.bin = workdir / ".bin"
        self.bin.mkdir()
        for name in ("python", "python3"):
            self._script(name, f'exec {shlex.quote(sys.executable)} "$@"')
        self._script("shmcomm", f'exec {shlex.quote(sys.executable)} -m shmcomm "$@"')
        env = child_env()
        package_root = str(Path(shmcomm.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
        env["SHMCOMM_LIBRARY"] = str(_library_path())
        env["PATH"] = str(self.bin) + os.pathsep + env.get("PATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env
        self.counter = 0

    def _script(self, name: str, body: str) -> None:
        script = self.bin / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)

    # -- one block -------------------------------------------------------------------------------

    def run(self, block: Block) -> Optional[str]:
        """Runs (or checks) one block; returns why it was not run, or None."""
        if "skip" in block.directives:
            return f"skipped: {block.directives['skip']}"
        module = block.directives.get("requires")
        if module:
            import importlib.util

            if importlib.util.find_spec(module) is None:
                return f"skipped: needs {module}, not installed"
        if block.lang == "python":
            return self._python(block)
        if block.lang == "c":
            return self._c(block)
        if block.lang in SHELL_LANGS:
            return self._shell(block)
        return "not code"

    def _python(self, block: Block) -> Optional[str]:
        self.counter += 1
        first = block.code.lstrip().splitlines()[0] if block.code.strip() else ""
        named = re.match(r"#\s*([\w.-]+\.py)\s*$", first)
        name = named.group(1) if named else f"block_{self.counter}.py"
        (self.workdir / name).write_text(block.code)
        if "save" in block.directives:
            assert named, f"{block.where}: a saved block needs a first line '# name.py'"
            self.saved.add(name)
            return "saved"
        self._execute(block, [sys.executable, name])
        return None

    def _c(self, block: Block) -> Optional[str]:
        self.counter += 1
        source = self.workdir / f"block_{self.counter}.c"
        program = re.search(r"\bint\s+main\s*\(", block.code) is not None
        if program:
            source.write_text(block.code)
        else:
            source.write_text("#include <shmcomm.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
                              "#include <string.h>\n\nint docs_fragment(void);\nint docs_fragment(void)\n{\n"
                              f"#line {block.line + 1} \"{block.path.relative_to(REPO)}\"\n{block.code}    return 0;\n}}\n")
        library = _library_path()
        exe = self.workdir / f"block_{self.counter}"
        cc = os.environ.get("CC", "cc")
        argv = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-unused-variable",
                "-Wno-unused-but-set-variable", "-Wno-unused-parameter", "-Wno-unused-function",
                "-I", str(_binding.HEADER_PATH.parent), str(source)]
        if program:
            argv += ["-o", str(exe), str(library), f"-Wl,-rpath,{library.parent}"]
        else:
            argv += ["-c", "-o", str(exe) + ".o"]
        compiled = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert compiled.returncode == 0, \
            f"{block.where}: the C block does not compile:\n{compiled.stderr}\n{source.read_text()}"
        if not program:
            return "compiled (fragment)"
        self._execute(block, [str(exe)])
        return None

    def _shell(self, block: Block) -> Optional[str]:
        script: List[str] = []
        notes: List[str] = []
        for command in shell_commands(block):
            run, note = self._classify(block, command)
            if run is not None:
                script.append(run)
            if note:
                notes.append(note)
        if not script:
            return "checked, not run: " + "; ".join(notes)
        self._execute(block, ["bash", "-e", "-o", "pipefail", "-c", "\n".join(script)])
        return None

    def _classify(self, block: Block, pipeline: List[List[str]]) -> Tuple[Optional[str], str]:
        """For one command line (a pipeline of commands, each a token list): the shell text to
        run, or None with what was checked instead."""
        text = " | ".join(shlex.join(c) for c in pipeline)
        kinds = []
        for command in pipeline:
            words = [w for w in command if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)] or command
            helper = len(pipeline) > 1 and words[0] in PIPE_HELPERS
            kinds.append("pipe helper" if helper else self._kind(block, words))
        if any(k == "run" for k in kinds):
            others = [c for c, k in zip(pipeline, kinds) if k != "run"]
            assert all(c[0] in PIPE_HELPERS for c in others), \
                f"{block.where}: cannot run {text!r}: only {sorted(PIPE_HELPERS)} may join a shmcomm command"
            runnable = []
            for command in pipeline:
                if _is_shmcomm(command) and "clean" in command and "--dry-run" not in command:
                    command = command + ["--dry-run"]  # never remove other processes' segments here
                runnable.append(shlex.join(command))
            return " | ".join(runnable), ""
        return None, f"{text} ({', '.join(kinds)})"

    def _kind(self, block: Block, words: List[str]) -> str:
        if _is_shmcomm(words):
            return "run"
        if words[0] in ("python", "python3") and len(words) > 1 and not words[1].startswith("-"):
            script = words[1]
            if script in self.saved:
                return "run"
            assert (REPO / script).is_file(), f"{block.where}: {script} is not in the repository"
            return f"{script} exists"
        if words[0] in ("pip", "pip3") or words[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
            return self._check_pip(block, words)
        for prefix, reason in NOT_RUN.items():
            if words[:len(prefix.split())] == prefix.split():
                return f"not run: {reason}"
        raise AssertionError(f"{block.where}: {shlex.join(words)!r} is a command this test does not know; "
                             "classify it in tests/python/test_docs.py (run it, check it, or say why not)")

    def _check_pip(self, block: Block, words: List[str]) -> str:
        extras = _extras()
        args = words[words.index("install") + 1:] if "install" in words else []
        for n, arg in enumerate(args):
            if n and args[n - 1] == "-r":
                assert (REPO / arg).is_file(), f"{block.where}: pip install -r {arg}: no such file"
                continue
            spec = re.match(r"^(\.|shmcomm)(?:\[([\w,-]+)\])?$", arg)
            if spec and spec.group(2):
                unknown = set(spec.group(2).split(",")) - extras
                assert not unknown, f"{block.where}: pip install {arg}: no extra {sorted(unknown)} in pyproject.toml"
        return "pip install checked"

    # -- processes ------------------------------------------------------------------------------

    def _execute(self, block: Block, argv: List[str]) -> None:
        running = Running(block, argv, self.workdir, self.env)
        if "background" in block.directives:
            self.background.append(running)
            return
        try:
            if "until" in block.directives:
                matched = running.wait_for_output(block.directives["until"], block.timeout)
                code = running.interrupt()
                assert matched, (f"{block.where}: the output never matched "
                                 f"{block.directives['until']!r} (exit {code}):\n{running.text}")
                assert "Traceback" not in _without_keyboard_interrupt(running.text), \
                    f"{block.where}:\n{running.text}"
            else:
                code = running.wait(block.timeout)
                if code is None:
                    running.kill()
                    raise AssertionError(f"{block.where}: still running after {block.timeout:g} s "
                                         f"(mark it background or until?):\n{running.text}")
                assert code == 0, f"{block.where}: exit {code}:\n{running.text}"
        finally:
            if running.proc.poll() is None:
                running.kill()
            self.stop_background()

    def stop_background(self) -> None:
        failures = []
        for bg in self.background:
            ended_by_itself = bg.proc.poll() is not None
            code = bg.interrupt()
            ok = code == 0 or (not ended_by_itself and code in (-signal.SIGINT, 130)
                               and "Error" not in _without_keyboard_interrupt(bg.text))
            if not ok:
                failures.append(f"{bg.block.where} (background, exit {code}):\n{bg.text}")
        self.background = []
        assert not failures, "\n".join(failures)

    def close(self) -> None:
        for bg in self.background:
            bg.kill()
        self.background = []


def _extras() -> set:
    """The optional-dependency groups of pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.optional-dependencies\]\n(.*?)(?=^\[)", text, re.S | re.M)
    assert section, "pyproject.toml has no [project.optional-dependencies]"
    return set(re.findall(r"^([\w-]+)\s*=", section.group(1), re.M))


def _without_keyboard_interrupt(text: str) -> str:
    """A background loop stopped by Ctrl-C prints a KeyboardInterrupt traceback: that is how it was
    stopped, not a failure. Anything else with "Error" in it is."""
    return re.sub(r"Traceback \(most recent call last\):.*?KeyboardInterrupt\s*", "", text, flags=re.S)


def _is_shmcomm(words: List[str]) -> bool:
    return words[:1] == ["shmcomm"] or words[:3] in (["python", "-m", "shmcomm"], ["python3", "-m", "shmcomm"])


def shell_commands(block: Block) -> List[List[List[str]]]:
    """The command lines of a shell block: each a pipeline (a list of commands, each a token list);
    ``&&`` and ``;`` separate command lines."""
    lines: List[str] = []
    pending = ""
    for raw in block.code.splitlines():
        if block.lang == "console":
            if pending:
                raw = raw
            elif raw.startswith("$ "):
                raw = raw[2:]
            else:
                continue  # output
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        if line.strip():
            lines.append(line)
    commands: List[List[List[str]]] = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        pipeline: List[List[str]] = [[]]
        for token in lexer:
            if token in ("&&", ";"):
                if pipeline[-1]:
                    commands.append(pipeline)
                pipeline = [[]]
            elif token == "|":
                pipeline.append([])
            elif token in ("&", "||", ">", ">>", "<"):
                raise AssertionError(f"{block.where}: {token!r} in {line!r}: use a docs-test directive "
                                     "(background) instead of shell job control or redirection")
            else:
                pipeline[-1].append(token)
        if pipeline[-1]:
            commands.append(pipeline)
    return commands


# ---- the tests ----------------------------------------------------------------------------------

def _segments() -> Dict[str, str]:
    return {str(s): s.channel for s in shmcomm.list_segments()}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("doc", DOC_FILES, ids=[str(p.relative_to(REPO)) for p in DOC_FILES])
def test_every_block_of_the_page_runs(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    before = set(_segments())
    with tempfile.TemporaryDirectory(prefix="shmcomm_docs_") as tmp:
        page = Page(doc, Path(tmp))
        report = []
        try:
            for block in parse_blocks(doc):
                report.append(f"{block.where} [{block.lang or 'text'}]: {page.run(block) or 'ran'}")
        finally:
            page.close()
            left = {name: channel for name, channel in _segments().items()
                    if name not in before and channel and channel in text}
            for name in left:
                shmcomm.force_unlink(name)
        print("\n".join(report))
        assert not left, f"{doc.name}: its examples left segments behind: {sorted(left.values())}"


def test_the_parser_sees_directives_and_shell_commands(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("text\n<!-- docs-test: background -->\n<!-- docs-test: timeout 5 -->\n```bash\n"
                    "$ not a prompt here\nA=1 python -m shmcomm ls --json | head -1 && shmcomm version\n"
                    "pip install \\\n  \".[tui]\"  # a comment\n```\n\n   ```python\n   print(1)\n   ```\n")
    blocks = parse_blocks(page)
    assert [(b.lang, b.line, b.directives) for b in blocks] == [
        ("bash", 4, {"background": "", "timeout": "5"}), ("python", 11, {})]
    assert blocks[1].code == "print(1)\n"
    commands = shell_commands(blocks[0])
    assert commands == [[["$", "not", "a", "prompt", "here"]],
                        [["A=1", "python", "-m", "shmcomm", "ls", "--json"], ["head", "-1"]],
                        [["shmcomm", "version"]], [["pip", "install", ".[tui]"]]]


def test_every_doc_is_collected() -> None:
    """New pages (docs/pair.md, docs/stream.md, ...) are picked up without touching this file."""
    on_disk = {p.name for p in (REPO / "docs").glob("*.md")}
    assert on_disk <= {p.name for p in DOC_FILES}


def _run_page(tmp_path: Path, markdown: str) -> List[Optional[str]]:
    doc = tmp_path / "page.md"
    doc.write_text(markdown)
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    page = Page(doc, work)
    try:
        return [page.run(block) for block in parse_blocks(doc)]
    finally:
        page.close()


def test_the_runner_catches_failing_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)  # where=... relative to tmp_path
    with pytest.raises(AssertionError, match="exit 3"):
        _run_page(tmp_path, "```python\nraise SystemExit(3)\n```\n")
    with pytest.raises(AssertionError, match="never matched"):
        _run_page(tmp_path, "<!-- docs-test: until never -->\n```python\nprint('once')\n```\n")
    with pytest.raises(AssertionError, match="does not compile"):
        _run_page(tmp_path, "```c\nshmc_no_such_function();\n```\n")
    with pytest.raises(AssertionError, match="does not know"):
        _run_page(tmp_path, "```bash\nrm -rf /tmp/x\n```\n")
    with pytest.raises(AssertionError, match="background, exit 2"):
        _run_page(tmp_path, "<!-- docs-test: background -->\n```python\nraise SystemExit(2)\n```\n"
                            "```python\nimport time; time.sleep(0.5)\n```\n")


def test_a_background_block_serves_the_next_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                channel: str) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    results = _run_page(tmp_path, f"""
<!-- docs-test: background -->
```python
from shmcomm import Replier
with Replier({channel!r}) as rep:
    rep.serve(lambda r: r * 2)
```

<!-- docs-test: until ^got 42$ -->
```python
import time
from shmcomm import Requester
with Requester({channel!r}, timeout_connect=20.0) as req:
    print("got", req.request(21, timeout=20.0), flush=True)
    time.sleep(3600)  # stopped by Ctrl-C once the line is out
```

```bash
python -m shmcomm version | grep -q shmcomm
```
""")
    assert results == [None, None, None]
