"""GET /openapi.json and GET /docs: openapi.yaml served as JSON, and as a readable HTML page.

The document is read once per process, on first use, and kept. /docs is rendered here, on
the server, from that same document: one self-contained page with inline CSS, no script and
no external file, so it reads offline and cannot drift from /openapi.json.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response
from jinja2 import Environment
from markupsafe import Markup, escape

DOCUMENT_PATH = Path(__file__).resolve().parent / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
# The page loads nothing: inline styles only, no script, no image, no font, no frame.
DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

apidocs = Blueprint("apidocs", __name__)

_lock = threading.RLock()  # re-entrant: the JSON and HTML forms are made from the cached document
_cache: dict[str, object] = {}


@apidocs.get("/openapi.json")
def openapi_json() -> Response:
    return Response(_cached("json", lambda: json.dumps(document(), ensure_ascii=False)), mimetype="application/json")


@apidocs.get("/docs")
def docs() -> Response:
    response = Response(_cached("html", lambda: render_docs(document())), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def document() -> dict:
    """The API document, read from openapi.yaml once per process."""
    return _cached("document", load_document)


def _cached(key: str, make) -> object:
    with _lock:
        if key not in _cache:
            _cache[key] = make()
        return _cache[key]


def load_document(path: Path = DOCUMENT_PATH) -> dict:
    """openapi.yaml as plain JSON data; a YAML-only value (a bare date, say) fails here, loudly."""
    try:
        import yaml  # imported here so a missing PyYAML breaks only these two pages, not the API
    except ImportError as exc:
        raise RuntimeError("PyYAML is needed to read openapi.yaml") from exc
    with path.open(encoding="utf-8") as stream:
        loaded = yaml.safe_load(stream)
    return json.loads(json.dumps(loaded, allow_nan=False))


# ---- the HTML page ------------------------------------------------------------------------


def resolve(doc: dict, node: object) -> object:
    """Follow local $refs ("#/components/...") until a node that is not a reference."""
    seen = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#/"):
            raise ValueError(f"unresolvable $ref {ref!r}")
        seen.add(ref)
        node = pointer(doc, ref)
    return node


def pointer(doc: dict, ref: str) -> object:
    node: object = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def md(text: str | None) -> Markup:
    """The little Markdown the document uses: paragraphs and `code` spans."""
    if not text:
        return Markup("")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    html = []
    for paragraph in paragraphs:
        escaped = str(escape(" ".join(line.strip() for line in paragraph.splitlines())))
        html.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped) + "</p>")
    return Markup("".join(html))


def pretty(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def schema_label(schema: object) -> Markup:
    """A one-line, human reading of a schema: "string (date-time) | null", "array of Record"..."""
    if schema is True or schema == {}:
        return Markup("any JSON value")
    if not isinstance(schema, dict):
        return Markup("nothing") if schema is False else escape(str(schema))
    if "$ref" in schema:
        name = ref_name(schema["$ref"])
        return Markup('<a href="#schema-{0}">{1}</a>').format(slug(name), name)
    if "const" in schema:
        return Markup("<code>{0}</code>").format(json.dumps(schema["const"]))
    for combinator, joiner in (("oneOf", " | "), ("anyOf", " | ")):
        if combinator in schema:
            return Markup(joiner).join(schema_label(part) for part in schema[combinator])
    if "allOf" in schema and "type" not in schema:
        return Markup("all of: ") + Markup(" + ").join(
            schema_label(part) if "$ref" in part else Markup("constraints") for part in schema["allOf"])
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if not types:
        return Markup("any JSON value")
    parts = []
    for kind in types:
        if kind == "array":
            parts.append(Markup("array of ") + schema_label(schema.get("items", True)))
        elif kind == "null":
            parts.append(Markup("null"))
        else:
            label = escape(kind)
            if schema.get("format"):
                label += Markup(" ({0})").format(schema["format"])
            parts.append(label)
    label = Markup(" | ").join(parts)
    return label + constraints(schema)


def constraints(schema: dict) -> Markup:
    notes = []
    if "enum" in schema:
        values = [json.dumps(value) for value in schema["enum"]]
        notes.append(Markup("one of ") + Markup(", ").join(Markup("<code>{0}</code>").format(v) for v in values))
    if "pattern" in schema:
        notes.append(Markup("matching <code>{0}</code>").format(schema["pattern"]))
    for key, word in (("minimum", "min"), ("maximum", "max"), ("minItems", "min items"), ("maxItems", "max items")):
        if key in schema:
            notes.append(Markup("{0} {1}").format(word, schema[key]))
    if "default" in schema:
        notes.append(Markup("default <code>{0}</code>").format(json.dumps(schema["default"])))
    return Markup("; ").join([Markup("")] + notes) if notes else Markup("")


def examples_of(doc: dict, holder: dict) -> list[dict]:
    """[{name, summary, value}] from an `examples` map or a single `example`."""
    found = []
    for name, example in (holder.get("examples") or {}).items():
        summary = example.get("summary") if isinstance(example, dict) else None
        example = resolve(doc, example)
        found.append({"name": name, "summary": summary or example.get("summary"), "value": pretty(example.get("value"))})
    if "example" in holder:
        found.append({"name": "example", "summary": None, "value": pretty(holder["example"])})
    return found


def contents(doc: dict, content: dict | None) -> list[dict]:
    return [{"media_type": media_type, "schema": schema_label(media.get("schema", True)),
             "examples": examples_of(doc, media)}
            for media_type, media in (content or {}).items()]


def security_label(doc: dict, requirements: list[dict] | None) -> Markup | None:
    if requirements is None:
        requirements = doc.get("security")
    if not requirements:
        return None
    schemes = doc.get("components", {}).get("securitySchemes", {})
    options = []
    for requirement in requirements:
        if not requirement:
            options.append(Markup("none"))
            continue
        names = []
        for name in requirement:
            scheme = resolve(doc, schemes.get(name, {}))
            kind = f"HTTP {scheme.get('scheme')}" if scheme.get("type") == "http" else scheme.get("type", "?")
            names.append(Markup('<a href="#security-{0}">{1}</a> ({2})').format(slug(name), name, kind))
        options.append(Markup(" and ").join(names))
    return Markup(" or ").join(options)


def operations(doc: dict) -> Iterator[dict]:
    for path, item in doc.get("paths", {}).items():
        yield from path_operations(doc, path, item)


def path_operations(doc: dict, path: str, item: dict) -> Iterator[dict]:
    item = resolve(doc, item)
    for method in HTTP_METHODS:
        if method in item:
            yield operation_view(doc, path, method, item[method], item.get("parameters", []))


def operation_view(doc: dict, path: str, method: str, operation: dict, shared: list) -> dict:
    parameters = [resolve(doc, p) for p in [*shared, *operation.get("parameters", [])]]
    body = resolve(doc, operation["requestBody"]) if "requestBody" in operation else None
    responses = []
    for status, response in operation.get("responses", {}).items():
        response = resolve(doc, response)
        headers = [{"name": name, **header_view(resolve(doc, header))}
                   for name, header in (response.get("headers") or {}).items()]
        responses.append({"status": status, "description": response.get("description", ""),
                          "headers": headers, "contents": contents(doc, response.get("content"))})
    callbacks = [{"name": name, "expression": expression, "operations": list(path_operations(doc, expression, item))}
                 for name, callback in (operation.get("callbacks") or {}).items()
                 for expression, item in resolve(doc, callback).items() if not expression.startswith("x-")]
    return {
        "id": slug(operation.get("operationId") or f"{method}-{path}"),
        "method": method.upper(), "path": path, "tags": operation.get("tags", []),
        "summary": operation.get("summary"), "description": operation.get("description"),
        "security": security_label(doc, operation.get("security")),
        "parameters": [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                        "schema": schema_label(p.get("schema", True)), "description": p.get("description"),
                        "example": pretty(p["example"]) if "example" in p else None} for p in parameters],
        "body": None if body is None else {
            "required": body.get("required", False), "description": body.get("description"),
            "contents": contents(doc, body.get("content"))},
        "responses": responses,
        "callbacks": callbacks,
    }


def header_view(header: dict) -> dict:
    return {"description": header.get("description"), "schema": schema_label(header.get("schema", True)),
            "required": header.get("required", False)}


def schema_views(doc: dict) -> list[dict]:
    views = []
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        required = set(schema.get("required", []))
        properties = [{"name": prop, "schema": schema_label(sub), "required": prop in required,
                       "description": sub.get("description") if isinstance(sub, dict) else None}
                      for prop, sub in (schema.get("properties") or {}).items()]
        rules = [part for part in schema.get("allOf", []) if "$ref" not in part]
        closed = schema.get("additionalProperties") is False or schema.get("unevaluatedProperties") is False
        views.append({"name": name, "id": slug(name), "description": schema.get("description"),
                      "label": schema_label({k: v for k, v in schema.items() if k != "allOf"})
                      if "properties" in schema or "type" in schema else schema_label(schema),
                      "properties": properties, "closed": closed and bool(properties),
                      "rules": [pretty(rule) for rule in rules]})
    return views


def render_docs(doc: dict) -> str:
    ops = list(operations(doc))
    tags = [tag["name"] for tag in doc.get("tags", [])]
    tags += sorted({tag for op in ops for tag in op["tags"]} - set(tags))
    groups = [(tag, [op for op in ops if tag in op["tags"]]) for tag in tags]
    untagged = [op for op in ops if not op["tags"]]
    if untagged:
        groups.append(("other", untagged))
    tag_descriptions = {tag["name"]: tag.get("description") for tag in doc.get("tags", [])}
    schemes = [{"name": name, "id": slug(name), "scheme": resolve(doc, scheme)}
               for name, scheme in doc.get("components", {}).get("securitySchemes", {}).items()]
    return TEMPLATE.render(doc=doc, info=doc.get("info", {}), groups=groups, tag_descriptions=tag_descriptions,
                           schemes=schemes, schemas=schema_views(doc))


_env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_env.filters["md"] = md

TEMPLATE = _env.from_string("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ info.title }} API {{ info.version }}</title>
<style>
:root { color-scheme: light dark; --fg: #1d232b; --muted: #5b6570; --line: #d8dde3; --bg: #fff; --soft: #f4f6f8;
        --get: #1b6fbf; --post: #1f8a4c; --other: #8a5a1f; --ok: #1f8a4c; --redir: #6a4fbf; --client: #b25e00; --server: #b3261e; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e3e7eb; --muted: #a3adb8; --line: #39414a; --bg: #14181c; --soft: #1d2329; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 980px; margin: 0 auto; padding: 1.5rem 1rem 4rem; }
h1 { margin: 0 0 .25rem; font-size: 1.8rem; }
h2 { margin-top: 2.5rem; padding-bottom: .3rem; border-bottom: 2px solid var(--line); }
h3 { margin: 0; font-size: 1.1rem; }
h4 { margin: 1.2rem 0 .4rem; font-size: .95rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
code, pre { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { background: var(--soft); padding: 0 .25em; border-radius: 3px; }
pre { background: var(--soft); padding: .7rem .9rem; border-radius: 6px; overflow-x: auto; margin: .3rem 0 .8rem; }
pre code { background: none; padding: 0; }
a { color: var(--get); }
.muted { color: var(--muted); }
.op { border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.1rem; margin: 1.2rem 0; }
.op > header { display: flex; gap: .6rem; align-items: baseline; flex-wrap: wrap; }
.method { display: inline-block; min-width: 4.2em; text-align: center; font-weight: 700; font-size: .8rem;
          color: #fff; border-radius: 4px; padding: .15em .4em; background: var(--other); }
.method.GET { background: var(--get); } .method.POST { background: var(--post); }
.status { display: inline-block; min-width: 3em; text-align: center; font-weight: 700; border-radius: 4px;
          padding: 0 .4em; color: #fff; background: var(--muted); }
.s2 { background: var(--ok); } .s3 { background: var(--redir); } .s4 { background: var(--client); } .s5 { background: var(--server); }
table { border-collapse: collapse; width: 100%; margin: .3rem 0 .8rem; font-size: 14px; }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid var(--line); padding: .35rem .5rem; }
th { color: var(--muted); font-weight: 600; }
td p { margin: 0 0 .3rem; }
.response { border-left: 3px solid var(--line); padding: .1rem 0 .1rem .8rem; margin: .8rem 0; }
.response-head { display: flex; gap: .6rem; align-items: baseline; }
.response-head p { margin: .2rem 0; }
.example-name { font-size: .85rem; color: var(--muted); margin: .2rem 0 0; }
nav ul { padding-left: 1.2rem; } nav li { margin: .15rem 0; }
.required { color: var(--server); font-size: .8rem; }
.callback { border: 1px dashed var(--line); border-radius: 6px; padding: .6rem .8rem; margin: .5rem 0; }
</style>
</head>
{% macro media_contents(items) %}
{% for c in items %}
<p><code>{{ c.media_type }}</code>: {{ c.schema }}</p>
{% for ex in c.examples %}
<p class="example-name">Example <code>{{ ex.name }}</code>{% if ex.summary %}: {{ ex.summary }}{% endif %}</p>
<pre><code>{{ ex.value }}</code></pre>
{% endfor %}
{% endfor %}
{% endmacro %}

{% macro operation_body(op) %}
{{ op.description | md }}
{% if op.security %}<p><strong>Authentication:</strong> {{ op.security }}.</p>{% endif %}

{% if op.parameters %}
<h4>Parameters</h4>
<table>
<thead><tr><th>Name</th><th>In</th><th>Type</th><th>Description</th></tr></thead>
<tbody>
{% for p in op.parameters %}
<tr><td><code>{{ p.name }}</code>{% if p.required %} <span class="required">required</span>{% endif %}</td>
<td>{{ p.in }}</td><td>{{ p.schema }}</td>
<td>{{ p.description | md }}{% if p.example is not none %}<p>Example: <code>{{ p.example }}</code></p>{% endif %}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}

{% if op.body %}
<h4>Request body{% if op.body.required %} <span class="required">required</span>{% endif %}</h4>
{{ op.body.description | md }}
{{ media_contents(op.body.contents) }}
{% endif %}

<h4>Responses</h4>
{% for r in op.responses %}
<div class="response">
<div class="response-head"><span class="status s{{ r.status[:1] }}">{{ r.status }}</span><div>{{ r.description | md }}</div></div>
{% if r.headers %}
<table>
<thead><tr><th>Header</th><th>Type</th><th>Description</th></tr></thead>
<tbody>
{% for h in r.headers %}
<tr><td><code>{{ h.name }}</code>{% if h.required %} <span class="required">always</span>{% endif %}</td><td>{{ h.schema }}</td><td>{{ h.description | md }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}
{{ media_contents(r.contents) }}
</div>
{% endfor %}
{% for cb in op.callbacks %}
<h4>Callback <code>{{ cb.name }}</code></h4>
<p>The service sends this request to <code>{{ cb.expression }}</code>.</p>
{% for cop in cb.operations %}
<div class="callback">
<header><span class="method {{ cop.method }}">{{ cop.method }}</span> <code>{{ cop.path }}</code>{% if cop.summary %} <span class="muted">{{ cop.summary }}</span>{% endif %}</header>
{{ operation_body(cop) }}
</div>
{% endfor %}
{% endfor %}
{% endmacro %}
<body>
<main>
<header>
<h1>{{ info.title }} API</h1>
<p class="muted">Version {{ info.version }} &middot; OpenAPI {{ doc.openapi }} &middot;
machine-readable document: <a href="openapi.json">openapi.json</a></p>
{% if info.summary %}<p><strong>{{ info.summary }}</strong></p>{% endif %}
{{ info.description | md }}
</header>

<nav aria-label="Endpoints">
<h2 id="endpoints">Endpoints</h2>
<ul>
{% for tag, ops in groups %}
<li>{{ tag }}<ul>
{% for op in ops %}
<li><a href="#op-{{ op.id }}"><span class="method {{ op.method }}">{{ op.method }}</span> <code>{{ op.path }}</code></a>
{% if op.summary %} &mdash; {{ op.summary }}{% endif %}</li>
{% endfor %}
</ul></li>
{% endfor %}
<li><a href="#authentication">Authentication</a></li>
<li><a href="#schemas">Schemas</a></li>
</ul>
</nav>

<section>
<h2 id="authentication">Authentication</h2>
{% for s in schemes %}
<div id="security-{{ s.id }}">
<h3><code>{{ s.name }}</code> &mdash; {{ s.scheme.type }}{% if s.scheme.scheme %} {{ s.scheme.scheme }}{% endif %}</h3>
{{ s.scheme.description | md }}
</div>
{% endfor %}
</section>

{% for tag, ops in groups %}
<section>
<h2 id="tag-{{ tag }}">{{ tag | capitalize }}</h2>
{{ tag_descriptions.get(tag) | md }}
{% for op in ops %}
<article class="op" id="op-{{ op.id }}">
<header><span class="method {{ op.method }}">{{ op.method }}</span><h3><code>{{ op.path }}</code></h3>
{% if op.summary %}<span class="muted">{{ op.summary }}</span>{% endif %}</header>
{{ operation_body(op) }}
</article>
{% endfor %}
</section>
{% endfor %}

<section>
<h2 id="schemas">Schemas</h2>
{% for s in schemas %}
<article class="op" id="schema-{{ s.id }}">
<header><h3><code>{{ s.name }}</code></h3><span class="muted">{{ s.label }}</span></header>
{{ s.description | md }}
{% if s.properties %}
<table>
<thead><tr><th>Property</th><th>Type</th><th>Description</th></tr></thead>
<tbody>
{% for p in s.properties %}
<tr><td><code>{{ p.name }}</code>{% if p.required %} <span class="required">required</span>{% endif %}</td>
<td>{{ p.schema }}</td><td>{{ p.description | md }}</td></tr>
{% endfor %}
</tbody>
</table>
{% if s.closed %}<p class="muted">No other properties.</p>{% endif %}
{% endif %}
{% for rule in s.rules %}
<p class="example-name">Also:</p>
<pre><code>{{ rule }}</code></pre>
{% endfor %}
</article>
{% endfor %}
</section>
</main>
</body>
</html>
""")
