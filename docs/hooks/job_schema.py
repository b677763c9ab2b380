"""MkDocs hook: renders ``pipeline/job.schema.json`` into the job-file reference page.

The page ``job-reference.md`` holds prose and the marker ``<!-- generated: job-schema -->``;
at build time the marker becomes one table per object of the schema (the top level, then
every nested object in the order a reader meets it), with each key's type, default, allowed
values and description. Nothing of the reference is typed by hand, so it cannot go stale:
``make schema`` regenerates the JSON from the pydantic models and a test fails when it is old.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

PAGE = "job-reference.md"
MARKER = "<!-- generated: job-schema -->"
SCHEMA = Path("pipeline/job.schema.json")

Node = dict[str, Any]


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace the marker of the reference page with the rendered schema."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{PAGE} lost its marker {MARKER!r}: the job-file reference would be empty")
    path = Path(config.config_file_path).parent / SCHEMA
    return markdown.replace(MARKER, render(json.loads(path.read_text())))


def on_serve(server: Any, config: MkDocsConfig, builder: Any) -> Any:
    """``mkdocs serve`` rebuilds when the schema changes."""
    server.watch(str(Path(config.config_file_path).parent / SCHEMA))
    return server


def render(schema: Node) -> str:
    """The whole reference: the top-level keys, then one section per nested object."""
    defs: dict[str, Node] = schema.get("$defs", {})
    paths = reached(schema, defs)
    parts = [section("Top level", "top-level", schema, defs, paths, [])]
    for name, where in paths.items():
        parts.append(section(heading(name, where, paths, defs), anchor(name), defs[name], defs, paths, where[1:]))
    return "\n\n".join(parts) + "\n"


def reached(schema: Node, defs: dict[str, Node]) -> dict[str, list[str]]:
    """Each object definition, in the order a reader meets it, with the key paths that lead to it."""
    found: dict[str, list[str]] = {}

    def visit(obj: Node, prefix: str) -> None:
        for key, prop in obj.get("properties", {}).items():
            for suffix, name in refs(prop):
                path = f"{prefix}{key}{suffix}"
                first = name not in found
                found.setdefault(name, []).append(path)
                if first:
                    visit(defs[name], path + ".")

    visit(schema, "")
    return found


def refs(node: Node) -> Iterator[tuple[str, str]]:
    """The definitions a property's schema refers to, each with the path suffix that leads there."""
    if "$ref" in node:
        yield "", node["$ref"].rsplit("/", 1)[-1]
    for alternative in node.get("anyOf", []) + node.get("oneOf", []):
        yield from refs(alternative)
    if isinstance(node.get("items"), dict):
        yield from ((f"[]{s}", n) for s, n in refs(node["items"]))
    if isinstance(node.get("additionalProperties"), dict):
        yield from ((f".<key>{s}", n) for s, n in refs(node["additionalProperties"]))


def anchor(name: str) -> str:
    return name.lower()


def heading(name: str, where: list[str], paths: dict[str, list[str]], defs: dict[str, Node]) -> str:
    """The key path of an object; the definition's title too when several objects share the path."""
    shared = sum(1 for other in paths.values() if other[0] == where[0]) > 1
    return f"`{where[0]}`" + (f" ({defs[name].get('title', name)})" if shared else "")


def section(title: str, ident: str, obj: Node, defs: dict[str, Node], paths: dict[str, list[str]],
            also: list[str]) -> str:
    """One object: its description and a table of its keys."""
    lines = [f"## {title} {{#{ident}}}", ""]
    if obj.get("description"):
        lines += [cell(obj["description"]), ""]
    if also:
        lines += ["Also used at " + ", ".join(f"`{p}`" for p in also) + ".", ""]
    required = set(obj.get("required", []))
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for key, prop in obj.get("properties", {}).items():
        default = "**required**" if key in required else (
            f"`{json.dumps(prop['default'])}`" if "default" in prop else "optional")
        lines.append(f"| `{key}` | {cell(type_of(prop, defs, paths))} | {cell(default)} | "
                     f"{cell(describe(prop, defs))} |")
    return "\n".join(lines)


def describe(prop: Node, defs: dict[str, Node]) -> str:
    """A key's own description, else that of the object it refers to."""
    if prop.get("description"):
        return prop["description"]
    names = {name for _, name in refs(prop)}
    return defs[names.pop()].get("description", "") if len(names) == 1 else ""


def link(name: str, defs: dict[str, Node], paths: dict[str, list[str]]) -> str:
    """A link to an object's section, named by its key path (by its title where several share the path)."""
    if name not in paths:
        return name
    shared = sum(1 for other in paths.values() if other[0] == paths[name][0]) > 1
    text = defs[name].get("title", name) if shared else paths[name][0]
    return f"[`{text}`](#{anchor(name)})"


def type_of(node: Node, defs: dict[str, Node], paths: dict[str, list[str]]) -> str:
    """A property's type in words: references become links to their section, enums list their values."""
    if "$ref" in node:
        return f"object, see {link(node['$ref'].rsplit('/', 1)[-1], defs, paths)}"
    choice = node.get("oneOf") or node.get("anyOf") or []
    if len(choice) > 1 and all("$ref" in a for a in choice):
        chosen_by = node.get("discriminator", {}).get("propertyName")
        return ("one of the objects " + ", ".join(link(a["$ref"].rsplit("/", 1)[-1], defs, paths) for a in choice)
                + (f", chosen by its `{chosen_by}`" if chosen_by else ""))
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        return " or ".join(type_of(a, defs, paths) for a in alternatives)
    kind = node.get("type", "any")
    if kind == "array":
        text = f"list of {type_of(node['items'], defs, paths)}" if isinstance(node.get("items"), dict) else "list"
    elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
        text = f"map of string to {type_of(node['additionalProperties'], defs, paths)}"
    else:
        text = " or ".join(kind) if isinstance(kind, list) else str(kind)
    if "format" in node:
        text += f" ({node['format']})"
    return text + bounds(node)


def bounds(node: Node) -> str:
    """Numeric and size limits, e.g. ``, >= 0, <= 10``."""
    limits = [("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")]
    parts = [f"{sign} {node[key]}" for key, sign in limits if key in node]
    if "minProperties" in node:
        parts.append(f"at least {node['minProperties']} entry")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} item")
    return "".join(f", {p}" for p in parts)


def cell(text: str) -> str:
    """Text that fits one cell of a Markdown table; ``<`` outside code spans is not read as HTML."""
    parts = " ".join(str(text).split()).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))
