"""File-system queries run inside the sandbox: glob, grep and directory listings.

Harness tools such as Claude Code's Glob, Grep and LS look at the workspace as a whole.
They run one fixed program, `PROGRAM` (plain Python 3, no dependencies), with the
query passed as a JSON argv element, so nothing in a call's input is ever interpreted by
a shell. The program prints one JSON object; `query` returns it.

Semantics follow the tools the harnesses use: globbing as node-glob does it (``**``,
``*``, ``?``, ``[...]``, ``{a,b}``; hidden entries only when the pattern names them),
searching as ripgrep does it by default (hidden and git-ignored files skipped, binary
files skipped, Python's `re` standing in for Rust's regex syntax, which agrees on the
patterns agents write).
"""

from __future__ import annotations

import json
from typing import Any

from sandboxes.errors import SandboxError
from tools.toolmap import ToolMappingError, ToolRun

PROGRAM = r"""
import fnmatch, json, os, re, subprocess, sys

MAX_ENTRIES = 200000

def braces(pattern):
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    out = []
    for alt in m.group(1).split(","):
        out.extend(braces(pattern[:m.start()] + alt + pattern[m.end():]))
    return out

def glob_regex(pattern):
    i, out = 0, ""
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"; i += 3; continue
        if pattern.startswith("**", i):
            out += ".*"; i += 2; continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out += re.escape(c)
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out += "[" + body.replace("\\", "\\\\") + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return out

def walk(root, hidden):
    count = 0
    for base, dirs, files in os.walk(root):
        dirs.sort()
        if not hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(files):
            if not hidden and name.startswith("."):
                continue
            count += 1
            if count > MAX_ENTRIES:
                return
            yield os.path.join(base, name)

def mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0

def do_glob(q):
    root = q["root"]
    pats = braces(q["pattern"])
    hidden = any(p.startswith(".") or "/." in p for p in pats)
    flags = re.IGNORECASE if q.get("nocase", True) else 0
    regexes = [re.compile("^" + glob_regex(p) + "$", flags) for p in pats]
    found = []
    for path in walk(root, hidden):
        rel = os.path.relpath(path, root)
        if any(r.match(rel) for r in regexes):
            found.append((mtime(path), path))
    found.sort()
    return {"files": [p for _, p in found]}

TYPES = {
    "py": ["*.py", "*.pyi"], "js": ["*.js", "*.jsx", "*.mjs", "*.cjs"], "ts": ["*.ts", "*.tsx", "*.mts", "*.cts"],
    "rust": ["*.rs"], "go": ["*.go"], "java": ["*.java"], "c": ["*.c", "*.h"], "cpp": ["*.cpp", "*.cc", "*.hpp", "*.h"],
    "md": ["*.md", "*.markdown"], "json": ["*.json"], "yaml": ["*.yaml", "*.yml"], "toml": ["*.toml"],
    "sh": ["*.sh", "*.bash"], "html": ["*.html", "*.htm"], "css": ["*.css"], "txt": ["*.txt"], "rb": ["*.rb"],
}

def ignored(root, paths):
    if not paths:
        return set()
    try:
        proc = subprocess.run(["git", "-C", root, "check-ignore", "--stdin"], input="\n".join(paths),
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(proc.stdout.splitlines()) if proc.returncode in (0, 1) else set()

def matches_glob(path, root, pattern):
    rel = os.path.relpath(path, root)
    for p in braces(pattern):
        negate = p.startswith("!")
        p = p[1:] if negate else p
        hit = fnmatch.fnmatch(os.path.basename(path), p) or fnmatch.fnmatch(rel, p)
        if hit:
            return not negate
    return False

def do_grep(q):
    root = q["root"]
    if os.path.isfile(root):
        candidates, base = [root], os.path.dirname(root)
    else:
        candidates, base = list(walk(root, False)), root
        skip = ignored(root, candidates)
        candidates = [p for p in candidates if p not in skip]
    if q.get("glob"):
        candidates = [p for p in candidates if matches_glob(p, base, q["glob"])]
    if q.get("type"):
        globs = TYPES.get(q["type"], ["*." + q["type"]])
        candidates = [p for p in candidates if any(fnmatch.fnmatch(os.path.basename(p), g) for g in globs)]
    flags = re.IGNORECASE if q.get("ignore_case") else 0
    if q.get("multiline"):
        flags |= re.MULTILINE | re.DOTALL
    try:
        regex = re.compile(q["pattern"], flags)
    except re.error as exc:
        return {"error": "regex parse error: " + str(exc)}
    results = []
    for path in candidates:
        try:
            with open(path, "rb") as fh:
                data = fh.read(20000000)
        except OSError:
            continue
        if b"\0" in data[:8192]:
            continue
        text = data.decode("utf-8", errors="replace")
        if q.get("multiline"):
            hits = [text.count("\n", 0, m.start()) for m in regex.finditer(text)]
        else:
            hits = [i for i, line in enumerate(text.split("\n")) if regex.search(line)]
        if hits:
            results.append({"path": path, "mtime": mtime(path), "lines": sorted(set(hits)), "count": len(hits),
                            "text": text.split("\n") if q.get("mode") == "content" else None})
    return {"results": results}

def do_ls(q):
    root = q["root"]
    ignore = q.get("ignore") or []
    entries, truncated = [], False
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and "__pycache__" not in d
                         and not any(fnmatch.fnmatch(d, g) for g in ignore))
        for d in dirs:
            entries.append(os.path.relpath(os.path.join(base, d), root) + "/")
        for name in sorted(files):
            if name.startswith(".") or any(fnmatch.fnmatch(name, g) for g in ignore):
                continue
            entries.append(os.path.relpath(os.path.join(base, name), root))
        if len(entries) > q.get("limit", 1000):
            truncated = True
            break
    return {"entries": sorted(entries), "truncated": truncated}

query = json.loads(sys.argv[1])
try:
    out = {"glob": do_glob, "grep": do_grep, "ls": do_ls}[query["op"]](query)
except Exception as exc:
    out = {"error": type(exc).__name__ + ": " + str(exc)}
sys.stdout.write(json.dumps(out))
"""


async def query(run: ToolRun, op: str, **args: Any) -> dict[str, Any]:
    """Run one query in the sandbox (see the module doc); errors come back as
    ``{"error": ...}``, a sandbox without python3 as a `ToolMappingError`."""
    payload = json.dumps({"op": op, **args})
    try:
        result = await run.sandbox.exec(["python3", "-c", PROGRAM, payload], timeout=120)
    except SandboxError as exc:
        raise ToolMappingError(f"the {op} query could not run in the sandbox: {exc}") from None
    if result.exit_code == 127 or "python3: not found" in result.stderr or "No such file" in result.stderr:
        raise ToolMappingError(f"the {op} query needs python3 in the sandbox image ({result.stderr.strip()[:200]})")
    try:
        data: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        return {"error": (result.stderr or result.stdout).strip()[:500] or "the query printed nothing"}
    return data
