"""Load and render the prompt templates shipped in this package.

A prompt is a Markdown file under ``prompts/`` rendered with Jinja2; its *name* is
its path relative to the package with ``/`` separators and without the suffix
(``rubrics/hook_bypass`` is ``prompts/rubrics/hook_bypass.md``). A template may be
``<name>.md`` or ``<name>.md.j2``; having both is an error rather than a silent choice.

Rendering is strict on purpose: a variable the caller forgot is an error
(`StrictUndefined`), not an empty string in a prompt sent to a model. Autoescaping is
off (these are prompts, not HTML) and block tags leave no blank lines behind
(`trim_blocks`, `lstrip_blocks`). Values are inserted as data: a transcript that
contains ``{{ ... }}`` is not itself rendered.

Files are read with `importlib.resources`, so this works from an installed wheel as
well as from a checkout; ``{% include "rubrics/_verdict.md" %}`` and ``{% extends %}``
resolve prompt names the same way. Names whose last part starts with ``_`` are
partials meant for inclusion and are left out of the default listing.

`prompts/` is the top layer and imports nothing from the rest of the project, so its
errors derive from `PromptError` (also a `LookupError` / `ValueError`), not from
``tools.errors.ForensicsError``; callers in ``tools/`` wrap them in their own errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

PACKAGE = "prompts"
SUFFIXES = (".md.j2", ".md")


class PromptError(Exception):
    """A prompt template could not be found, parsed or rendered."""


class PromptNotFoundError(PromptError, LookupError):
    """No template has the requested name; the message lists the ones that exist."""


class PromptRenderError(PromptError, ValueError):
    """A template has a syntax error or reads a variable the caller did not give."""


def _parts(name: str) -> list[str]:
    """Split and check a prompt name: relative, ``/``-separated, no ``.``/``..``/empty parts.
    A trailing ``.md`` or ``.md.j2`` is tolerated and dropped."""
    cleaned = name
    for suffix in SUFFIXES:
        cleaned = cleaned.removesuffix(suffix)
    parts = cleaned.split("/")
    if not cleaned or "\\" in cleaned or any(p in {"", ".", ".."} for p in parts):
        raise PromptNotFoundError(
            f"invalid prompt name {name!r}: use a relative name with '/' separators, such as 'rubrics/hook_bypass'"
        )
    return parts


class PromptLibrary:
    """The templates under one directory (a package's resources, or any folder).

    The module-level functions use the ``prompts`` package's library; tests and
    plugins can build their own over another folder.
    """

    def __init__(self, root: Traversable, *, label: str = PACKAGE) -> None:
        self.root = root
        self.label = label
        self.environment = jinja2.Environment(
            loader=jinja2.FunctionLoader(self._load_source),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    # ------------------------------------------------------------------ lookup
    def available(self, *, include_partials: bool = False) -> list[str]:
        """Every prompt name in the library, sorted (partials only when asked for)."""
        names = {name for name, _ in self._walk(self.root, "")}
        if not include_partials:
            names = {n for n in names if not n.rsplit("/", 1)[-1].startswith("_")}
        return sorted(names)

    def _walk(self, node: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
        for child in node.iterdir():
            if child.is_dir():
                if not child.name.startswith((".", "__")):
                    yield from self._walk(child, f"{prefix}{child.name}/")
                continue
            for suffix in SUFFIXES:
                if child.name.endswith(suffix) and len(child.name) > len(suffix):
                    yield prefix + child.name[: -len(suffix)], child
                    break

    def path(self, name: str) -> Traversable:
        """The file holding prompt `name` (a `pathlib.Path` when the library is on disk).

        Raises `PromptNotFoundError`, listing the available prompts, when there is none,
        and when both ``<name>.md`` and ``<name>.md.j2`` exist.
        """
        parts = _parts(name)
        directory = self.root
        for part in parts[:-1]:
            directory = directory.joinpath(part)
        stem = "/".join(parts)
        existing = [directory.joinpath(parts[-1] + s) for s in SUFFIXES]
        existing = [f for f in existing if f.is_file()]
        if len(existing) > 1:
            raise PromptNotFoundError(
                f"prompt {name!r} is ambiguous: both {stem}.md and {stem}.md.j2 exist; remove one"
            )
        if not existing:
            available = ", ".join(self.available()) or "none"
            raise PromptNotFoundError(
                f"no prompt named {name!r} (looked for {stem}.md and {stem}.md.j2 in {self.label}); "
                f"available: {available}"
            )
        return existing[0]

    def _load_source(self, name: str) -> tuple[str, str, Callable[[], bool]]:
        """Jinja2 loader hook: source, a display file name, and an up-to-date check
        (file modification time where the file is on disk, so edits are picked up)."""
        file = self.path(name)
        source = file.read_text(encoding="utf-8")
        display = f"{self.label}/{'/'.join(_parts(name))}"
        if isinstance(file, Path):
            mtime = file.stat().st_mtime_ns
            return source, display, lambda: file.is_file() and file.stat().st_mtime_ns == mtime
        return source, display, lambda: True

    # --------------------------------------------------------------- rendering
    def _template(self, name: str) -> jinja2.Template:
        try:
            return self.environment.get_template("/".join(_parts(name)))
        except jinja2.TemplateSyntaxError as exc:
            raise PromptRenderError(
                f"prompt {exc.name or name!r} line {exc.lineno}: syntax error: {exc.message}"
            ) from None
        except PromptError:
            raise
        except jinja2.TemplateNotFound as exc:  # an include/extends named a missing template
            raise PromptNotFoundError(
                f"prompt {name!r} includes {exc.name!r}, which does not exist; "
                f"available: {', '.join(self.available(include_partials=True))}"
            ) from None

    def variables(self, name: str) -> set[str]:
        """The variables a prompt reads, including those of the templates it includes
        or extends by a literal name, so callers can check them before rendering."""
        needed: set[str] = set()
        seen: set[str] = set()

        def visit(template_name: str) -> None:
            key = "/".join(_parts(template_name))
            if key in seen:
                return
            seen.add(key)
            try:
                ast = self.environment.parse(self.path(key).read_text(encoding="utf-8"))
            except jinja2.TemplateSyntaxError as exc:
                raise PromptRenderError(f"prompt {key!r} line {exc.lineno}: syntax error: {exc.message}") from None
            needed.update(jinja2.meta.find_undeclared_variables(ast))
            for ref in jinja2.meta.find_referenced_templates(ast):
                if ref is not None:
                    visit(ref)

        visit(name)
        return needed

    def render(self, name: str, /, **variables: Any) -> str:
        """Render prompt `name` with `variables` (`name` is positional-only, so a
        template may itself use a variable called ``name``).

        Raises `PromptNotFoundError` (listing the available names) when it does not
        exist, and `PromptRenderError` naming the variable when one is missing or the
        template does not parse.
        """
        template = self._template(name)
        try:
            return template.render(**variables)
        except jinja2.UndefinedError as exc:
            given = ", ".join(sorted(variables)) or "none"
            raise PromptRenderError(
                f"prompt {name!r} needs a variable that was not given: {exc.message} (given: {given})"
            ) from None
        except PromptError:
            raise
        except jinja2.TemplateSyntaxError as exc:  # in a template included at render time
            raise PromptRenderError(
                f"prompt {exc.name or name!r} line {exc.lineno}: syntax error: {exc.message}"
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise PromptNotFoundError(f"prompt {name!r} includes {exc.name!r}, which does not exist") from None


@functools.cache
def default_library() -> PromptLibrary:
    """The library of templates shipped in the ``prompts`` package."""
    return PromptLibrary(resources.files(PACKAGE), label=f"the {PACKAGE!r} package")


def load_prompt(name: str, /, **variables: Any) -> str:
    """Render ``prompts/<name>.md`` (or ``.md.j2``) with `variables`; see `PromptLibrary.render`."""
    return default_library().render(name, **variables)


def prompt_path(name: str) -> Traversable:
    """The file holding a shipped prompt; see `PromptLibrary.path`."""
    return default_library().path(name)


def available_prompts(*, include_partials: bool = False) -> list[str]:
    """The names of the shipped prompts."""
    return default_library().available(include_partials=include_partials)


def prompt_variables(name: str) -> set[str]:
    """The variables a shipped prompt reads; see `PromptLibrary.variables`."""
    return default_library().variables(name)


__all__ = [
    "PromptError",
    "PromptLibrary",
    "PromptNotFoundError",
    "PromptRenderError",
    "available_prompts",
    "default_library",
    "load_prompt",
    "prompt_path",
    "prompt_variables",
]
