"""MkDocs hooks: the reference pages written from the code itself, at build time, so that they cannot drift.

A page asks for a generated part with a line ``<!-- generated: NAME -->``; the build replaces it with

- ``cli``: every command of the ``banditkit`` typer app, its arguments and options;
- ``http``: every operation of the decision service's OpenAPI document, its statuses and schemas (the document
  itself is published beside the page as ``reference/openapi.json``, no CDN viewer needed);
- ``settings``: every field of :class:`banditkit.service.config.Settings` with its ``BANDITKIT_*`` variable;
- ``log``: the decision log's columns, from :mod:`banditkit.service.export`.

An unknown name, a setting without a description or a log column without an explanation fails the build.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

MARKER = re.compile(r"^<!-- generated: ([a-z]+) -->$", re.MULTILINE)
OPENAPI_PATH = "reference/openapi.json"


def on_files(files: Files, config: Any) -> Files:
    """Publish the service's OpenAPI document beside the HTTP reference, so the page can link to it."""
    files.append(File.generated(config, OPENAPI_PATH, content=json.dumps(openapi(), indent=2) + "\n"))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Replace each ``<!-- generated: NAME -->`` line of a page with the part it names."""

    def generated(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise PluginError(f"{page.file.src_uri}: unknown generated part {name!r}; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    text = MARKER.sub(generated, markdown)
    if "<!-- generated: settings -->" in markdown:
        from banditkit.service.config import OTHER_VARIABLES

        for variable in sorted(OTHER_VARIABLES):
            if f"`{variable}` |" not in text:
                raise PluginError(f"{page.file.src_uri}: {variable} is read by banditkit but has no row in the page")
    return text


# --- cli -----------------------------------------------------------------------------------------------------------


def cli_reference() -> str:
    """The typer app's own markdown (as ``typer banditkit.cli utils docs`` writes it), one heading level down."""
    import click
    import typer
    from typer.cli import get_docs_for_click

    from banditkit.cli import app

    command = typer.main.get_command(app)
    text = get_docs_for_click(obj=command, ctx=click.Context(command, info_name="banditkit"), name="banditkit")
    return _demote_headings(text)


def _demote_headings(text: str) -> str:
    """Every markdown heading outside code blocks one level deeper (the page has its own title)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        lines.append(f"#{line}" if line.startswith("#") and not fenced else line)
    return "\n".join(lines) + "\n"


# --- http ----------------------------------------------------------------------------------------------------------


@cache
def openapi() -> dict[str, Any]:
    """The OpenAPI document of the decision service, as a server with default settings would publish it."""
    from banditkit.service.app import create_app
    from banditkit.service.config import Settings

    return create_app(Settings(store="memory://")).openapi()


def http_reference() -> str:
    """The operations grouped by tag (parameters, body, statuses), then the schemas, as markdown tables."""
    document = openapi()
    parts = [
        f"Generated from the service's OpenAPI {document['openapi']} document "
        f"([{OPENAPI_PATH.rsplit('/', 1)[1]}](openapi.json)), version {document['info']['version']}: "
        f"{_text(document['info'].get('description', ''))}\n",
    ]
    for name, scheme in document.get("components", {}).get("securitySchemes", {}).items():
        parts.append(
            f"Authentication (`{name}`): {scheme.get('scheme', scheme['type'])}; {_text(scheme['description'])}.\n"
        )
    tags: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            tags.setdefault((operation.get("tags") or ["other"])[0], []).append((method.upper(), path, operation))
    for tag, operations in tags.items():
        parts.append(f"## {tag.capitalize()}\n")
        parts.extend(_operation(method, path, operation) for method, path, operation in operations)
    parts.append("## Schemas\n")
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        parts.append(_schema(name, schema))
    return "\n".join(parts)


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    lines = [
        f"### `{method} {path}`\n",
        f"**{operation.get('summary', '')}**. {_text(operation.get('description', ''))}\n",
    ]
    if operation.get("security"):
        lines.append("Needs a bearer token.\n")
    if operation.get("parameters"):
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        lines += [
            f"| `{p['name']}` | {p['in']} | {_type(p['schema'])} | {'yes' if p.get('required') else 'no'} "
            f"| {_cell(' '.join(filter(None, [p.get('description', ''), _constraints(p['schema'])])))} |"
            for p in operation["parameters"]
        ]
        lines.append("")
    if "requestBody" in operation:
        for media, content in operation["requestBody"]["content"].items():
            lines.append(f"Body (`{media}`): {_type(content['schema'])}.\n")
    lines += ["| status | meaning | body |", "|---|---|---|"]
    for status, response in operation["responses"].items():
        bodies = [
            f"{_type(c['schema'])} (`{media}`)" for media, c in response.get("content", {}).items() if "schema" in c
        ]
        headers = [
            f"header `{h}`: {_text(spec.get('description', ''))}" for h, spec in response.get("headers", {}).items()
        ]
        lines.append(
            f"| {status} | {_cell('; '.join([response['description'], *headers]))} | {', '.join(bodies) or '—'} |"
        )
    return "\n".join(lines) + "\n"


def _schema(name: str, schema: dict[str, Any]) -> str:
    lines = [f"### {name} {{#{_anchor(name)}}}\n"]
    if schema.get("description"):
        lines.append(_text(schema["description"]) + "\n")
    if "properties" not in schema:
        return "\n".join([*lines, f"Type: {_type(schema)}.\n"])
    required = set(schema.get("required", []))
    lines += ["| field | type | required | default | description |", "|---|---|---|---|---|"]
    for field, spec in schema["properties"].items():
        default = f"`{json.dumps(spec['default'])}`" if "default" in spec else "—"
        description = " ".join(filter(None, [_text(spec.get("description", "")), _constraints(spec)]))
        needed = "yes" if field in required else "no"
        lines.append(f"| `{field}` | {_type(spec)} | {needed} | {_cell(default)} | {_cell(description)} |")
    if schema.get("additionalProperties") is False:
        lines.append("\nAny other field is refused (422).")
    return "\n".join(lines) + "\n"


def _anchor(schema_name: str) -> str:
    return f"schema-{schema_name.lower()}"


def _type(schema: dict[str, Any]) -> str:
    """A JSON schema's type in words, with a link to a named schema."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{_anchor(name)})"
    if "anyOf" in schema or "oneOf" in schema:
        return " or ".join(_type(option) for option in schema.get("anyOf", schema.get("oneOf")))
    if "enum" in schema:
        return "one of " + ", ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'])}"
    return str(kind)


CONSTRAINTS = {
    "minimum": "≥ {}",
    "exclusiveMinimum": "> {}",
    "maximum": "≤ {}",
    "exclusiveMaximum": "< {}",
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
    "pattern": "matches `{}`",
}


def _constraints(schema: dict[str, Any]) -> str:
    """The limits of a value and of the items of an array, e.g. "(≥ 1, items: at most 128 characters)"."""
    found = [CONSTRAINTS[key].format(value) for key, value in schema.items() if key in CONSTRAINTS]
    for option in schema.get("anyOf", []):
        inner = _constraints(option)
        found += [inner[1:-1]] if inner else []
    if "items" in schema and (inner := _constraints(schema["items"])):
        found.append(f"items: {inner[1:-1]}")
    return f"({', '.join(found)})" if found else ""


def _text(text: str) -> str:
    """A docstring-flavoured sentence as markdown: reST ``literals`` become code spans."""
    return re.sub(r"``([^`]+)``", r"`\1`", text.strip())


def _cell(text: str) -> str:
    """Text for one table cell: one line, pipes outside code spans escaped."""
    pieces = re.split(r"(`[^`]*`)", text.replace("\n", " "))
    return "".join(piece if piece.startswith("`") else piece.replace("|", "\\|") for piece in pieces)


# --- settings ------------------------------------------------------------------------------------------------------


def settings_reference() -> str:
    """One row per setting: its variable, type, default, limits and meaning (the field's description)."""
    from banditkit.service.config import OTHER_VARIABLES, Settings

    prefix = Settings.model_config.get("env_prefix", "")
    lines = ["| setting | environment variable | type | default | description |", "|---|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if not field.description:
            raise PluginError(f"Settings.{name} has no description: give its Field(...) a description=")
        limits = ", ".join(filter(None, (_metadata_limit(item) for item in field.metadata)))
        description = _text(field.description) + (f" ({limits})" if limits else "")
        lines.append(
            f"| `{name}` | `{prefix}{name.upper()}` | {_cell(_annotation(field.annotation))} "
            f"| {_cell(_default(field.default))} | {_cell(description)} |"
        )
    others = ", ".join(f"`{variable}`" for variable in sorted(OTHER_VARIABLES))
    lines.append(f"\nThe only other `{prefix}*` variables read are {others}, described below; any other is refused.")
    return "\n".join(lines) + "\n"


def _metadata_limit(item: Any) -> str:
    for attribute, template in (("ge", "≥ {}"), ("gt", "> {}"), ("le", "≤ {}"), ("lt", "< {}")):
        if getattr(item, attribute, None) is not None:
            return template.format(getattr(item, attribute))
    return ""


def _annotation(annotation: Any) -> str:
    """A type as a reader writes it: ``Path | None``, ``tuple[SecretStr, ...]``, ``one of "NORMAL", "FULL"``."""
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(f"`{json.dumps(value)}`" for value in typing.get_args(annotation))
    if annotation is type(None):
        return "`None`"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return f"`{annotation.__name__}`"
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_annotation(argument) for argument in typing.get_args(annotation))
    text = re.sub(r"\b[a-z_]+\.(?=[A-Za-z])", "", str(annotation)).replace("NoneType", "None")
    return f"`{text}`"


def _default(value: Any) -> str:
    if value is None or value == ():
        return "none"
    return f"`{value}`"


# --- log -----------------------------------------------------------------------------------------------------------


def log_reference() -> str:
    """The export's columns in order with their meaning, from the table of :mod:`banditkit.service.export`."""
    from banditkit.service import export

    meaning = dict(re.findall(r"^([a-z_]+) {2,}(.+)$", export.__doc__ or "", re.MULTILINE))
    missing = [column for column in export.COLUMNS if column not in meaning]
    if missing:
        raise PluginError(f"banditkit.service.export: column(s) {', '.join(missing)} not explained in its docstring")
    lines = ["| # | column | meaning |", "|---|---|---|"]
    lines += [f"| {i} | `{column}` | {_cell(meaning[column])} |" for i, column in enumerate(export.COLUMNS, 1)]
    after_table = (export.__doc__ or "").rsplit("=" * 15, 1)[-1]  # the paragraphs under the reST table
    notes = [re.sub(r":[a-z]+:`([^`]+)`", r"`\1`", _text(paragraph)) for paragraph in after_table.split("\n\n")]
    return "\n".join([*lines, "", *[f"{note}\n" for note in notes if note]])


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cache(cli_reference),
    "http": cache(http_reference),
    "settings": cache(settings_reference),
    "log": cache(log_reference),
}
