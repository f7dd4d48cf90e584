"""Read Nextflow DSL2 modules and render their `script:` / `stub:` blocks without Nextflow.

Only the Groovy our modules and `conf/modules.config` use is understood, and anything else
is an error (so the modules stay within what this can check):

- expressions: string literals ('...', "..." with ${expr} / $name.name interpolation),
  numbers, true/false/null, names with dotted fields (`meta.id`, `task.ext.args`: a missing
  field is null, as `task.ext` is in Nextflow), list literals `[a, b]`, `(expr)`, the Elvis
  operator `a ?: b`, the ternary `c ? a : b`, `a == b`, and the methods `join(sep)`,
  `trim()`, `toLowerCase()`, `tokenize(sep)` and `[-1]` indexing;
- statements in a script block before its string: `def NAME = EXPR`, `NAME = EXPR`, comments;
- the script string is a triple-double-quoted GString, indentation stripped as Nextflow does.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op>\?:|==|[?:\[\](),.])
  | (?P<name>[A-Za-z_]\w*)
)""", re.VERBOSE)


class GroovyError(ValueError):
    """Groovy outside the subset this module understands."""


def _truthy(v: Any) -> bool:
    return v not in (None, False, "", 0) and not (isinstance(v, list | dict) and not v)


def _show(v: Any) -> str:
    """A value as Groovy prints it in a GString."""
    if v is None:
        return "null"
    if v is True or v is False:
        return str(v).lower()
    return str(v)


def interpolate(text: str, env: dict[str, Any], escapes: bool = True) -> str:
    """Render a GString body: ${expr}, $name.name, and (escapes) \\\\, \\$, \\", \\n, \\t."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and escapes and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        elif c == "$" and text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            out.append(_show(evaluate(text[i + 2:j - 1], env)))
            i = j
        elif c == "$" and (m := re.match(r"\$([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", text[i:])):
            out.append(_show(evaluate(m.group(1), env)))
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


class _Parser:
    def __init__(self, src: str, env: dict[str, Any]) -> None:
        self.toks: list[tuple[str, str]] = []
        pos = 0
        while pos < len(src.rstrip()):
            m = _TOKEN.match(src, pos)
            if not m or m.end() == pos:
                raise GroovyError(f"cannot read {src[pos:]!r} in {src!r}")
            kind = m.lastgroup
            self.toks.append((kind, m.group(kind)))
            pos = m.end()
        self.i, self.env, self.src = 0, env, src

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks) or (want and self.toks[self.i][1] != want):
            raise GroovyError(f"expected {want or 'more'} in {self.src!r}")
        self.i += 1
        return self.toks[self.i - 1]

    def expr(self) -> Any:
        cond = self.equality()
        if self.peek() == "?":
            self.take("?")
            a = self.expr()
            self.take(":")
            b = self.expr()
            return a if _truthy(cond) else b
        return cond

    def equality(self) -> Any:
        v = self.elvis()
        while self.peek() == "==":
            self.take()
            v = v == self.elvis()
        return v

    def elvis(self) -> Any:
        v = self.postfix()
        while self.peek() == "?:":
            self.take()
            w = self.postfix()
            v = v if _truthy(v) else w
        return v

    def postfix(self) -> Any:
        v = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == "[":
                idx = self.expr()
                self.take("]")
                v = v[idx]
                continue
            name = self.take()[1]
            if self.peek() == "(":
                self.take("(")
                args = [] if self.peek() == ")" else [self.expr()]
                self.take(")")
                v = self.call(v, name, args)
            else:
                v = v.get(name) if isinstance(v, dict) else getattr(v, name)
        return v

    @staticmethod
    def call(v: Any, name: str, args: list[Any]) -> Any:
        if name == "join":
            return args[0].join(_show(x) for x in v)
        if name == "trim":
            return v.strip()
        if name == "toLowerCase":
            return v.lower()
        if name == "tokenize":
            return [t for t in re.split("[" + re.escape(args[0]) + "]", v) if t]
        raise GroovyError(f"method {name}() is outside the supported subset")

    def primary(self) -> Any:
        kind, tok = self.take()
        if kind == "str":
            body = tok[1:-1]
            return interpolate(body, self.env) if tok[0] == '"' else body.replace("\\'", "'")
        if kind == "num":
            return float(tok) if "." in tok else int(tok)
        if tok == "[":
            items = []
            while self.peek() != "]":
                items.append(self.expr())
                if self.peek() == ",":
                    self.take(",")
            self.take("]")
            return items
        if tok == "(":
            v = self.expr()
            self.take(")")
            return v
        if kind == "name":
            if tok in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[tok]
            if tok not in self.env:
                raise GroovyError(f"unknown name {tok!r} in {self.src!r}")
            return self.env[tok]
        raise GroovyError(f"unexpected {tok!r} in {self.src!r}")


def evaluate(src: str, env: dict[str, Any]) -> Any:
    """The value of one Groovy expression of the subset."""
    p = _Parser(src, env)
    v = p.expr()
    if p.peek() is not None:
        raise GroovyError(f"trailing {p.peek()!r} in {src!r}")
    return v


@dataclass
class Output:
    emit: str
    patterns: list[str]  # unrendered path(...) arguments
    optional: bool
    evals: list[str] = field(default_factory=list)  # unrendered eval(...) commands
    topic: str | None = None


@dataclass
class Process:
    name: str
    text: str
    inputs: list[str]
    outputs: list[Output] = field(default_factory=list)
    script: str = ""
    stub: str = ""

    def render(self, block: str, env: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Run a block's statements, then render its string: (bash text, env after)."""
        env = dict(env)
        body = self.script if block == "script" else self.stub
        head, _, rest = body.partition('"""')
        tpl, _, tail = rest.partition('"""')
        if tail.strip():
            raise GroovyError(f"{self.name} {block}: text after the script string")
        for line in head.splitlines():
            line = line.strip()
            if not line or line.startswith("//"):
                continue
            m = re.fullmatch(r"(?:def\s+)?([A-Za-z_]\w*)\s*=\s*(.+)", line)
            if not m:
                raise GroovyError(f"{self.name} {block}: unsupported statement {line!r}")
            env[m.group(1)] = evaluate(m.group(2), env)
        return textwrap.dedent(interpolate(tpl, env)).strip("\n") + "\n", env

    def output_paths(self, env: dict[str, Any]) -> dict[str, tuple[list[str], bool]]:
        """emit -> (rendered file names, optional), for the outputs that are files."""
        return {o.emit: ([_literal(p, env) for p in o.patterns], o.optional)
                for o in self.outputs if o.patterns}

    def eval_commands(self, env: dict[str, Any]) -> dict[str, list[str]]:
        """emit -> rendered eval(...) commands (e.g. the versions topic)."""
        return {o.emit: [_literal(c, env) for c in o.evals] for o in self.outputs if o.evals}


def _literal(quoted: str, env: dict[str, Any]) -> str:
    """A Groovy string literal's value (double quotes interpolate)."""
    return interpolate(quoted[1:-1], env) if quoted[0] == '"' else quoted[1:-1]


def _section(body: str, name: str) -> str:
    """Text of a `name:` section of a process (up to the next section label)."""
    m = re.search(rf"^\s*{name}:\s*$(.*?)(?=^\s*(?:input|output|when|script|stub|exec):\s*$|\Z)",
                  body, re.S | re.M)
    return m.group(1) if m else ""


def read_process(path: Path) -> Process:
    """The (single) process of a module file."""
    text = Path(path).read_text()
    m = re.search(r"^process\s+(\w+)\s*\{(.*)^\}", text, re.S | re.M)
    if not m:
        raise GroovyError(f"{path}: no process block")
    name, body = m.group(1), m.group(2)
    inputs = re.findall(r"(?:val|path)\((\w+)", _section(body, "input"))
    proc = Process(name, text, inputs, script=_section(body, "script"),
                   stub=_section(body, "stub"))
    for line in _section(body, "output").splitlines():
        if not line.strip():
            continue
        emit = re.search(r"emit:\s*(\w+)", line)
        pats = re.findall(r"path\s*\(?\s*(\"[^\"]*\"|'[^']*')", line)
        evals = re.findall(r"eval\((\"[^\"]*\"|'[^']*')\)", line)
        topic = re.search(r"topic:\s*(\w+)", line)
        if not emit or not (pats or evals):
            raise GroovyError(f"{name}: output line without emit, path or eval: {line.strip()!r}")
        proc.outputs.append(Output(emit.group(1), pats, "optional: true" in line, evals,
                                   topic.group(1) if topic else None))
    return proc


def read_params(config: str) -> dict[str, Any]:
    """`name = value` lines of the first `params { }` block of a nextflow.config."""
    m = re.search(r"^params\s*\{(.*?)^\}", config, re.S | re.M)
    out: dict[str, Any] = {}
    for line in (m.group(1) if m else "").splitlines():
        line = line.split("//")[0].strip()
        if "=" in line:
            k, v = (s.strip() for s in line.split("=", 1))
            out[k] = v if re.search(r"\b(projectDir|launchDir)\b", v) else evaluate(v, {})
    return out


def read_profile_params(config: str, profile: str) -> dict[str, Any]:
    """`name = value` lines of `params { }` inside profile `profile`."""
    m = re.search(rf"^\s*{profile}\s*\{{\s*params\s*\{{(.*?)\}}", config, re.S | re.M)
    return read_params(f"params {{{m.group(1)}\n}}") if m else {}


def read_ext_args(modules_config: str) -> dict[str, str]:
    """withName -> the text of its `ext.args = { ... }` closure body."""
    out = {}
    for m in re.finditer(r"withName:\s*'(\w+)'\s*\{\s*ext\.args\s*=\s*\{(.*?)\}\s*\}",
                         modules_config, re.S):
        out[m.group(1)] = " ".join(m.group(2).split())
    return out
