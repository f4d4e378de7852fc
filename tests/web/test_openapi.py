"""openapi.yaml against the real app.

1. The document is structurally valid OpenAPI 3.1: a meta-schema written from the 3.1
   specification's fixed fields, every $ref resolves, every schema is valid JSON Schema
   2020-12, and every example matches its schema.
2. The app's routes and the document's paths match both ways (methods and path parameters).
3. Live: a realistic sequence of requests through the Flask test client on a real Redis;
   every response body (and required header) is validated against the schema of its
   documented status code. An undocumented status code fails. The last test runs them all
   again and checks that every documented response was seen.
4. /docs renders the document as self-contained HTML; /openapi.json serves it as JSON.
"""
from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from rq import Worker
from rq.job import JobStatus

import parsers
from web import ratelimit
import snapshots
from jobs.attempts import note_failure
from jobs.queues import fetch_job, job_id_for, make_queue
from server import create_app
from storage import RECORDS_INDEX_LOCK, Storage, make_record
from tests.parsers.contract import CONTRACT_KEYS
from tests.support.job_runs import save_done_record

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = PROJECT_ROOT / "web" / "openapi.yaml"
DOC = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
BASE_URI = "urn:metaparse:openapi"
REGISTRY = Registry().with_resource(BASE_URI, DRAFT202012.create_resource(DOC))
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

BOOK = "https://www.goodreads.com/book/show/5907"
NEWS = "https://www.bbc.com/news"
WSJ = "https://www.wsj.com/"
PAGE = "https://example.com/blog/ten-rules-for-sourdough"
MISSING_BOOK = "https://www.goodreads.com/book/show/99999999999"


# ---- helpers: pointers, refs, validators ------------------------------------------------------


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer_of(*tokens: str) -> str:
    return "".join("/" + escape(str(token)) for token in tokens)


def lookup(pointer: str) -> object:
    node: object = DOC
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def follow(pointer: str) -> tuple[str, dict]:
    """(pointer, object) after following Reference Objects (responses, parameters, ...)."""
    node = lookup(pointer)
    while isinstance(node, dict) and "$ref" in node:
        assert node["$ref"].startswith("#/"), node["$ref"]
        pointer = node["$ref"][1:]
        node = lookup(pointer)
    return pointer, node


FORMATS = FormatChecker(formats=())
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@FORMATS.checks("date-time")
def is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not RFC3339.match(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))  # raises on a bad date
    return True


@FORMATS.checks("uri")
def is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and (parts.scheme not in ("http", "https") or bool(parts.netloc)) and " " not in value


def validator_at(pointer: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{BASE_URI}#{quote(pointer, safe='/~')}"},
                                registry=REGISTRY, format_checker=FORMATS)


def schema_errors(pointer: str, instance: object) -> list[str]:
    errors = list(validator_at(pointer).iter_errors(instance))
    if not errors:
        return []
    best = best_match(errors)
    return [f"{best.message} at {'/'.join(map(str, best.absolute_path)) or 'the root'}"] + [
        f"{error.message} at {'/'.join(map(str, error.absolute_path))}" for error in errors if error is not best][:5]


def assert_valid(pointer: str, instance: object, what: str) -> None:
    errors = schema_errors(pointer, instance)
    assert not errors, f"{what} does not match {pointer}:\n  " + "\n  ".join(errors) + f"\n{json.dumps(instance)[:2000]}"


def operations() -> list[tuple[str, str, dict]]:
    return [(path, method, item[method]) for path, item in DOC["paths"].items()
            for method in HTTP_METHODS if method in item]


def walk(node: object, pointer: str = ""):
    yield pointer, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{pointer}/{escape(str(key))}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{pointer}/{index}")


# ---- 1. the document is valid OpenAPI 3.1 -----------------------------------------------------

# The structure of an OpenAPI 3.1 document, written from the specification's fixed fields
# (https://spec.openapis.org/oas/v3.1.0). Stricter than the spec in one place, as this
# project wants: `paths` is required and every operation must have `responses`.
OAS_31_STRUCTURE = yaml.safe_load(r"""
$schema: https://json-schema.org/draft/2020-12/schema
type: object
required: [openapi, info, paths]
properties:
  openapi: {type: string, pattern: '^3\.1\.\d+(-.+)?$'}
  info: {$ref: '#/$defs/info'}
  jsonSchemaDialect: {type: string, format: uri}
  servers: {type: array, items: {$ref: '#/$defs/server'}}
  paths: {$ref: '#/$defs/paths'}
  webhooks: {type: object, additionalProperties: {$ref: '#/$defs/path-item-or-ref'}}
  components: {$ref: '#/$defs/components'}
  security: {type: array, items: {$ref: '#/$defs/security-requirement'}}
  tags:
    type: array
    items: {$ref: '#/$defs/tag'}
  externalDocs: {$ref: '#/$defs/external-docs'}
$ref: '#/$defs/extensible'
unevaluatedProperties: false
$defs:
  extensible:
    patternProperties: {'^x-': true}
  reference:
    type: object
    required: [$ref]
    properties:
      $ref: {type: string}
      summary: {type: string}
      description: {type: string}
    additionalProperties: false
  info:
    type: object
    required: [title, version]
    properties:
      title: {type: string}
      summary: {type: string}
      description: {type: string}
      termsOfService: {type: string}
      contact:
        type: object
        properties: {name: {type: string}, url: {type: string}, email: {type: string}}
      license:
        type: object
        required: [name]
        properties: {name: {type: string}, identifier: {type: string}, url: {type: string}}
        not: {required: [identifier, url]}
      version: {type: string}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  server:
    type: object
    required: [url]
    properties:
      url: {type: string}
      description: {type: string}
      variables:
        type: object
        additionalProperties:
          type: object
          required: [default]
          properties:
            enum: {type: array, items: {type: string}, minItems: 1}
            default: {type: string}
            description: {type: string}
  paths:
    type: object
    propertyNames: {pattern: '^/'}
    additionalProperties: {$ref: '#/$defs/path-item'}
  path-item-or-ref:
    if: {type: object, required: [$ref]}
    then: {$ref: '#/$defs/reference'}
    else: {$ref: '#/$defs/path-item'}
  path-item:
    type: object
    properties:
      summary: {type: string}
      description: {type: string}
      servers: {type: array, items: {$ref: '#/$defs/server'}}
      parameters: {type: array, items: {$ref: '#/$defs/parameter-or-ref'}}
    patternProperties:
      '^(get|put|post|delete|options|head|patch|trace)$': {$ref: '#/$defs/operation'}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  operation:
    type: object
    required: [responses]
    properties:
      tags: {type: array, items: {type: string}}
      summary: {type: string}
      description: {type: string}
      externalDocs: {$ref: '#/$defs/external-docs'}
      operationId: {type: string}
      parameters: {type: array, items: {$ref: '#/$defs/parameter-or-ref'}}
      requestBody: {$ref: '#/$defs/request-body-or-ref'}
      responses: {$ref: '#/$defs/responses'}
      callbacks: {type: object, additionalProperties: {$ref: '#/$defs/callback-or-ref'}}
      deprecated: {type: boolean}
      security: {type: array, items: {$ref: '#/$defs/security-requirement'}}
      servers: {type: array, items: {$ref: '#/$defs/server'}}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  external-docs:
    type: object
    required: [url]
    properties: {description: {type: string}, url: {type: string, format: uri}}
  parameter-or-ref:
    if: {type: object, required: [$ref]}
    then: {$ref: '#/$defs/reference'}
    else: {$ref: '#/$defs/parameter'}
  parameter:
    type: object
    required: [name, in]
    properties:
      name: {type: string}
      in: {enum: [query, header, path, cookie]}
      description: {type: string}
      required: {type: boolean}
      deprecated: {type: boolean}
      allowEmptyValue: {type: boolean}
      style: {type: string}
      explode: {type: boolean}
      allowReserved: {type: boolean}
      schema: {$ref: '#/$defs/schema'}
      content: {$ref: '#/$defs/content', minProperties: 1, maxProperties: 1}
      example: true
      examples: {$ref: '#/$defs/examples'}
    oneOf:
      - required: [schema]
      - required: [content]
    not: {required: [example, examples]}
    if: {properties: {in: {const: path}}}
    then: {properties: {required: {const: true}}, required: [required]}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  request-body-or-ref:
    if: {type: object, required: [$ref]}
    then: {$ref: '#/$defs/reference'}
    else: {$ref: '#/$defs/request-body'}
  request-body:
    type: object
    required: [content]
    properties:
      description: {type: string}
      content: {$ref: '#/$defs/content'}
      required: {type: boolean}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  content:
    type: object
    propertyNames: {pattern: '^[^/\s]+/[^/\s]+$'}
    additionalProperties: {$ref: '#/$defs/media-type'}
  media-type:
    type: object
    properties:
      schema: {$ref: '#/$defs/schema'}
      example: true
      examples: {$ref: '#/$defs/examples'}
      encoding: {type: object}
    not: {required: [example, examples]}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  examples:
    type: object
    additionalProperties:
      if: {type: object, required: [$ref]}
      then: {$ref: '#/$defs/reference'}
      else:
        type: object
        properties:
          summary: {type: string}
          description: {type: string}
          value: true
          externalValue: {type: string}
        not: {required: [value, externalValue]}
        $ref: '#/$defs/extensible'
        unevaluatedProperties: false
  responses:
    type: object
    minProperties: 1
    propertyNames: {pattern: '^([1-5](\d\d|XX)|default|x-.*)$'}
    additionalProperties: {$ref: '#/$defs/response-or-ref'}
  response-or-ref:
    if: {type: object, required: [$ref]}
    then: {$ref: '#/$defs/reference'}
    else: {$ref: '#/$defs/response'}
  response:
    type: object
    required: [description]
    properties:
      description: {type: string}
      headers: {type: object, additionalProperties: {$ref: '#/$defs/header-or-ref'}}
      content: {$ref: '#/$defs/content'}
      links: {type: object}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  header-or-ref:
    if: {type: object, required: [$ref]}
    then: {$ref: '#/$defs/reference'}
    else: {$ref: '#/$defs/header'}
  header:
    type: object
    properties:
      description: {type: string}
      required: {type: boolean}
      deprecated: {type: boolean}
      style: {const: simple}
      explode: {type: boolean}
      schema: {$ref: '#/$defs/schema'}
      content: {$ref: '#/$defs/content', minProperties: 1, maxProperties: 1}
      example: true
      examples: {$ref: '#/$defs/examples'}
    oneOf:
      - required: [schema]
      - required: [content]
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  callback-or-ref:
    if: {type: object, required: [$ref]}
    then: {$ref: '#/$defs/reference'}
    else: {$ref: '#/$defs/callback'}
  callback:
    type: object
    additionalProperties: {$ref: '#/$defs/path-item-or-ref'}
  tag:
    type: object
    required: [name]
    properties:
      name: {type: string}
      description: {type: string}
      externalDocs: {$ref: '#/$defs/external-docs'}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  schema:
    type: [object, boolean]
  security-requirement:
    type: object
    additionalProperties: {type: array, items: {type: string}}
  security-scheme:
    type: object
    required: [type]
    properties:
      type: {enum: [apiKey, http, mutualTLS, oauth2, openIdConnect]}
      description: {type: string}
      name: {type: string}
      in: {enum: [query, header, cookie]}
      scheme: {type: string}
      bearerFormat: {type: string}
      flows: {type: object}
      openIdConnectUrl: {type: string}
    allOf:
      - if: {properties: {type: {const: apiKey}}}
        then: {required: [name, in]}
      - if: {properties: {type: {const: http}}}
        then: {required: [scheme]}
      - if: {properties: {type: {const: oauth2}}}
        then: {required: [flows]}
      - if: {properties: {type: {const: openIdConnect}}}
        then: {required: [openIdConnectUrl]}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
  components:
    type: object
    properties:
      schemas: {type: object, additionalProperties: {$ref: '#/$defs/schema'}}
      responses: {type: object, additionalProperties: {$ref: '#/$defs/response-or-ref'}}
      parameters: {type: object, additionalProperties: {$ref: '#/$defs/parameter-or-ref'}}
      examples: {$ref: '#/$defs/examples'}
      requestBodies: {type: object, additionalProperties: {$ref: '#/$defs/request-body-or-ref'}}
      headers: {type: object, additionalProperties: {$ref: '#/$defs/header-or-ref'}}
      securitySchemes:
        type: object
        additionalProperties:
          if: {type: object, required: [$ref]}
          then: {$ref: '#/$defs/reference'}
          else: {$ref: '#/$defs/security-scheme'}
      links: {type: object}
      callbacks: {type: object, additionalProperties: {$ref: '#/$defs/callback-or-ref'}}
      pathItems: {type: object, additionalProperties: {$ref: '#/$defs/path-item-or-ref'}}
    patternProperties:
      '^(schemas|responses|parameters|examples|requestBodies|headers|securitySchemes|links|callbacks|pathItems)$':
        propertyNames: {pattern: '^[a-zA-Z0-9._-]+$'}
    $ref: '#/$defs/extensible'
    unevaluatedProperties: false
""")


def test_the_meta_schema_itself_is_valid_json_schema():
    Draft202012Validator.check_schema(OAS_31_STRUCTURE)


def test_document_is_structurally_valid_openapi_3_1():
    assert re.fullmatch(r"3\.1\.\d+", DOC["openapi"])
    errors = sorted(Draft202012Validator(OAS_31_STRUCTURE).iter_errors(DOC), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:20])


def test_yaml_holds_only_json_values():
    """No YAML-only values (bare dates, integer keys) that the JSON form would change."""
    assert json.loads(json.dumps(DOC, allow_nan=False)) == DOC


def test_every_ref_resolves():
    refs = [(where, node["$ref"]) for where, node in walk(DOC) if isinstance(node, dict) and isinstance(node.get("$ref"), str)]
    assert refs
    for where, ref in refs:
        assert ref.startswith("#/"), f"{where}: only local refs are used, not {ref}"
        try:
            lookup(ref[1:])
        except (KeyError, IndexError, ValueError):
            pytest.fail(f"{where}: $ref {ref} does not resolve")
        assert REGISTRY.resolver(BASE_URI).lookup(f"{BASE_URI}{ref}").contents is not None


def test_every_component_is_used():
    refs = {node["$ref"] for _, node in walk(DOC) if isinstance(node, dict) and isinstance(node.get("$ref"), str)}
    schemes = {name for _, _, op in operations() for requirement in op.get("security", []) for name in requirement}
    for section, entries in DOC["components"].items():
        for name in entries:
            used = f"#/components/{section}/{escape(name)}" in refs or (section == "securitySchemes" and name in schemes)
            assert used, f"components/{section}/{name} is never used"


def test_every_operation_is_complete():
    ids = [op.get("operationId") for _, _, op in operations()]
    assert all(ids) and len(ids) == len(set(ids)), "operationIds must be present and unique"
    declared_tags = {tag["name"] for tag in DOC.get("tags", [])}
    schemes = set(DOC["components"].get("securitySchemes", {}))
    for path, method, op in operations():
        where = f"{method.upper()} {path}"
        assert op["responses"], f"{where} has no responses"
        assert op.get("summary"), f"{where} has no summary"
        assert set(op.get("tags", [])) <= declared_tags, f"{where} uses an undeclared tag"
        for requirement in op.get("security", []):
            assert set(requirement) <= schemes, f"{where} names an unknown security scheme"
        params = [follow(pointer_of("paths", path, method, "parameters", i))[1] for i in range(len(op.get("parameters", [])))]
        in_path = {p["name"] for p in params if p["in"] == "path"}
        assert in_path == set(re.findall(r"\{([^}]+)\}", path)), f"{where}: path parameters do not match the template"
        assert len({(p["name"], p["in"]) for p in params}) == len(params), f"{where}: a parameter is listed twice"
        for status in op["responses"]:
            _, response = follow(pointer_of("paths", path, method, "responses", status))
            assert response["description"].strip(), f"{where} {status} has no description"


def test_post_endpoints_document_the_optional_bearer_token():
    scheme = DOC["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"} and "API_TOKENS" in scheme["description"]
    assert "security" not in DOC, "reads are open: no document-wide security"
    for path, method, op in operations():
        if method in ("post", "delete"):  # the writes
            assert op["security"] == [{"bearerAuth": []}, {}], f"{method.upper()} {path}: bearer, or nothing without API_TOKENS"
            assert "401" in op["responses"]
        else:
            assert "security" not in op and "401" not in op["responses"], f"{method.upper()} {path} is open"


def test_every_component_schema_is_valid_json_schema_2020_12():
    for name, schema in DOC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    for where, node in walk(DOC["paths"]):
        if where.endswith("/schema") and isinstance(node, dict):
            Draft202012Validator.check_schema(node)


def example_sites() -> list[tuple[str, str, object]]:
    """(where, schema pointer, example value) for every example in the document."""
    found = []
    for where, node in walk(DOC):
        if not isinstance(node, dict) or "schema" not in node or not isinstance(node["schema"], dict):
            continue
        if "example" in node:
            found.append((where, where + "/schema", node["example"]))
        for name in node.get("examples") or {}:
            _, example = follow(f"{where}/examples/{escape(name)}")
            found.append((f"{where}/examples/{name}", where + "/schema", example["value"]))
    return found


def test_every_example_matches_its_schema():
    sites = example_sites()
    assert len(sites) > 30
    for where, schema_pointer, value in sites:
        assert_valid(schema_pointer, value, f"the example at {where}")


def test_every_response_and_request_body_has_an_example():
    def has_example(media: dict) -> bool:
        return "example" in media or bool(media.get("examples"))

    for path, method, op in operations():
        for status in op["responses"]:
            _, response = follow(pointer_of("paths", path, method, "responses", status))
            if status == "304":
                assert "content" not in response, f"{method.upper()} {path} 304 never has a body"
                continue
            assert response.get("content"), f"{method.upper()} {path} {status} documents no body"
            for media_type, media in response["content"].items():
                assert has_example(media), f"{method.upper()} {path} {status} {media_type} has no example"
        if "requestBody" in op:
            _, body = follow(pointer_of("paths", path, method, "requestBody"))
            assert all(has_example(media) for media in body["content"].values())
        for i in range(len(op.get("parameters", []))):
            _, parameter = follow(pointer_of("paths", path, method, "parameters", i))
            assert "example" in parameter or parameter.get("examples"), f"{method.upper()} {path} {parameter['name']}"


def test_data_schemas_match_the_parser_contract():
    """The three data kinds carry exactly the keys tests/parsers/contract.py promises."""
    names = {"goodreads_book": "GoodreadsBook", "news_headlines": "NewsHeadlines", "page": "Page"}
    schemas = DOC["components"]["schemas"]
    for kind, keys in CONTRACT_KEYS.items():
        schema = schemas[names[kind]]
        assert set(schema["properties"]) == keys and set(schema["required"]) == keys, kind
        assert schema["properties"]["kind"] == {"const": kind} and schema["additionalProperties"] is False
    assert set(schemas["Record"]["properties"]["kind"]["enum"]) == set(CONTRACT_KEYS)


# Real parser output on the in-repo fixture pages, against the documented data schemas.
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
NEWS_FIXTURE_URLS = {"bbc-gel": "http://www.bbc.co.uk/news", "bbc-next": NEWS, "guardian": "https://www.theguardian.com/uk",
                     "wapo": "https://www.washingtonpost.com/", "wsj": WSJ, "foxnews": "https://www.foxnews.com/"}
REFUSED_FIXTURES = {"signin.html", "soft-404.html"}  # pages the parser must refuse: they have no data
PARSED_FIXTURES = [
    *[("goodreads", page, "https://www.goodreads.com/book/show/1000001")
      for page in sorted((FIXTURES / "goodreads").glob("*.html")) if page.name not in REFUSED_FIXTURES],
    *[("news", page, next((url for prefix, url in NEWS_FIXTURE_URLS.items() if page.name.startswith(prefix)),
                          "https://www.example-news.org/")) for page in sorted((FIXTURES / "news").glob("*.html"))],
    *[("generic", page, "https://example.com/page") for page in sorted((FIXTURES / "generic").glob("*.html"))],
]


@pytest.mark.parametrize("source,page,url", PARSED_FIXTURES, ids=[f"{s}/{p.name}" for s, p, _ in PARSED_FIXTURES])
def test_real_parser_output_matches_the_data_schemas(source, page, url):
    data = parsers.parse(page.read_bytes(), url, "text/html", source=source)
    schema = {"goodreads": "GoodreadsBook", "news": "NewsHeadlines", "generic": "Page"}[source]
    assert_valid(f"/components/schemas/{schema}", data, f"parsers.parse({page.name})")


# ---- 2. routes and paths match both ways ------------------------------------------------------


def app_routes(app) -> dict[str, set[str]]:
    """{"/batches/{batch_id}": {"get"}, ...} for every rule outside /rqstatus and static files."""
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/rqstatus") or rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(method.lower() for method in rule.methods - {"HEAD", "OPTIONS"})
    return routes


def test_every_route_is_documented_and_every_path_exists(app):
    routes = app_routes(app)
    documented = {path: {method for method in HTTP_METHODS if method in item} for path, item in DOC["paths"].items()}
    undocumented = {path: sorted(methods - documented.get(path, set())) for path, methods in routes.items()}
    missing = {path: sorted(methods - routes.get(path, set())) for path, methods in documented.items()}
    assert not {k: v for k, v in undocumented.items() if v}, "routes of the app missing from openapi.yaml"
    assert not {k: v for k, v in missing.items() if v}, "paths in openapi.yaml the app does not serve"
    assert routes == documented


def test_documented_query_parameters_are_the_ones_the_api_reads():
    """Each query parameter the code reads (request.args.get("x")) is documented on its path."""
    source = "".join((PROJECT_ROOT / name).read_text() for name in ("web/api.py", "web/records.py", "web/control.py"))
    read = set(re.findall(r"request\.args\.get\(['\"](\w+)['\"]", source))
    documented = {follow(pointer_of("paths", path, method, "parameters", i))[1]["name"]
                  for path, method, op in operations() for i in range(len(op.get("parameters", [])))
                  if follow(pointer_of("paths", path, method, "parameters", i))[1]["in"] == "query"}
    assert read == documented


# ---- 3. live responses against the document ---------------------------------------------------

SEEN: set[tuple[str, str, str]] = set()  # (METHOD, path, documented status) of every checked response


def check(response, method: str, path: str) -> object:
    """Validate a live response against the document; returns its body."""
    method = method.lower()
    operation = DOC["paths"][path][method]
    status = str(response.status_code)
    key = status if status in operation["responses"] else f"{status[0]}XX"
    assert key in operation["responses"], (
        f"{method.upper()} {path} answered {status}, which openapi.yaml does not document: {response.get_data(as_text=True)[:500]}")
    response_pointer, documented = follow(pointer_of("paths", path, method, "responses", key))
    what = f"{method.upper()} {path} {status}"
    if status == "304":  # never a body (RFC 9110): documented without content
        assert response.get_data() == b"" and "content" not in documented
        body = None
    else:
        media_type = response.mimetype
        assert media_type in documented.get("content", {}), f"{what}: undocumented {media_type}"
        body = response.get_json() if media_type == "application/json" else response.get_data(as_text=True)
        assert_valid(f"{response_pointer}/content/{escape(media_type)}/schema", body, what)
    for name in documented.get("headers", {}):
        header_pointer, header = follow(f"{response_pointer}/headers/{escape(name)}")
        if header.get("required"):
            assert name in response.headers, f"{method.upper()} {path} {status} lacks the {name} header"
        if name in response.headers:
            assert_valid(f"{header_pointer}/schema", response.headers[name], f"the {name} header")
    SEEN.add((method.upper(), path, key))
    return body


def request_errors(path: str, body: object) -> list[str]:
    pointer, request_body = follow(pointer_of("paths", path, "post", "requestBody"))
    return schema_errors(f"{pointer}/content/application~1json/schema", body)


def post(client, path: str, body: object, status: int, *, valid_request: bool | None = None, **kwargs) -> object:
    """POST a JSON body, check the answer's status and schema; optionally the request's validity too."""
    if valid_request is not None:
        assert (not request_errors(path, body)) is valid_request, f"request body validity: {body!r}"
    response = client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    return check(response, "post", path)


def get(client, path: str, status: int, url: str | None = None, **kwargs) -> object:
    response = client.get(url or path, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    return check(response, "get", path)


def book_data(book_id: str = "5907") -> dict:
    return {
        "kind": "goodreads_book", "book_id": book_id, "title": "The Hobbit", "authors": ["J.R.R. Tolkien"],
        "rating": 4.29, "ratings_count": 4212431, "reviews_count": 78012,
        "description": "In a hole in the ground there lived a hobbit.", "librarian_note": None, "isbn": "0618260307",
        "isbn13": "9780618260300", "asin": None, "pages": 366, "format": "Paperback", "language": "English",
        "publisher": "Houghton Mifflin", "published": "2002-08-15", "first_published": "1937-09",
        "genres": ["Fantasy", "Classics"], "series": {"name": "Middle Earth", "position": None},
        "cover_url": "https://images.example.org/5907.jpg", "url": f"https://www.goodreads.com/book/show/{book_id}",
    }


def news_data(titles: list[str]) -> dict:
    return {"kind": "news_headlines", "site": "bbc.com", "headlines": [
        {"title": title, "url": f"https://www.bbc.com/news/world-{70000000 + i}", "url_as_linked": None, "kicker": None,
         "summary": None, "image": None, "section": "world", "position": i + 1, "sublink": False}
        for i, title in enumerate(titles)]}


def page_data() -> dict:
    return {
        "kind": "page", "title": "Ten rules for sourdough", "description": None, "site_name": "Crumb & Crust",
        "image": None, "author": "Lou Tremblay", "authors": ["Lou Tremblay"], "published": "2023-11-05T18:30:00-05:00",
        "canonical_url": PAGE, "type": "article", "language": "en-US", "word_count": 812,
    }


def save_done(redis_client, url: str, kind: str, data: dict, age: timedelta = timedelta(0)) -> dict:
    assert set(data) == CONTRACT_KEYS[kind]
    return save_done_record(redis_client, url, kind, data, age)


def save_failed(redis_client, url: str = MISSING_BOOK) -> None:
    error = {"code": "http_status", "message": f"HTTP 404 from {url}"}
    Storage(redis_client).save_record(make_record(url, "goodreads_book", "failed", parsers.PARSER_VERSION, error=error), 3600)


def start_job(redis_client, url: str, step: str | None) -> None:
    job = fetch_job(redis_client, job_id_for(url))
    job.set_status(JobStatus.STARTED)
    if step:
        job.meta["step"] = step
        job.save_meta()


def test_live_submissions(client, redis_client):
    for path in ("/parse",):
        redis_client.flushdb()
        save_done(redis_client, BOOK, "goodreads_book", book_data())
        body = post(client, path, [BOOK + ".The_Hobbit", "https://www.goodreads.com/book/show/1", "http://127.0.0.1/x",
                                   7, None, {"url": BOOK}], 202)
        assert [item["status"] for item in body["accepted"]] == ["cached", "queued"] and len(body["rejected"]) == 4
        assert {type(item["url"]).__name__ for item in body["rejected"]} == {"str", "int", "NoneType", "dict"}
        body = post(client, path, {"urls": [BOOK], "refresh": True, "callback_url": None}, 202, valid_request=True)
        assert body["accepted"][0]["status"] == "queued"
        post(client, path, [BOOK], 202, valid_request=True)  # in flight: not queued twice
        body = post(client, path, ["ftp://example.com/x", "https://www.goodreads.com/author/show/1"], 400, valid_request=True)
        assert body["batch_id"] is None and body["accepted"] == []
        for bad in ({"urls": "https://www.bbc.com/news"}, {"urls": []}, [], {"urls": [BOOK], "refresh": "yes"},
                    {"urls": [BOOK], "colour": "red"}, {"refresh": True}, "just a string", 42, None):
            body = post(client, path, bad, 400, valid_request=False)
            assert body["error"]["code"] == "invalid_body"
        body = post(client, path, {"urls": [BOOK], "callback_url": 5}, 400, valid_request=False)
        assert body["error"]["code"] == "invalid_callback_url"
        # Schema-valid, refused by configuration: this server has no CALLBACK_SECRET.
        body = post(client, path, {"urls": [BOOK], "callback_url": "https://hooks.example.com/done"}, 400, valid_request=True)
        assert body["error"]["code"] == "callbacks_unavailable"
        broken = client.post(path, data="{not json", content_type="application/json")
        assert broken.status_code == 400 and check(broken, "post", path)["error"]["code"] == "invalid_body"
        as_text = client.post(path, data=json.dumps([BOOK]), content_type="text/plain")
        assert as_text.status_code == 415 and check(as_text, "post", path)["error"]["code"] == "unsupported_media_type"
        huge = client.post(path, data="[" + " " * (64 * 1024) + "]", content_type="application/json")
        assert huge.status_code == 413 and check(huge, "post", path)["error"]["code"] == "body_too_large"
    body = post(client, "/parse", {"urls": [BOOK], "callback_format": "xml"}, 400, valid_request=False)
    assert body["error"]["code"] == "invalid_callback_format"


SCHEDULED_TWO = "2 books are scheduled for info parsing."
NOT_BOOK_LINKS = "Only array of goodreads book links is accepted."
NO_META_INFO = "No meta info found for this book."
BAD_BOOK_URL = "'url' query parameter is required. It must be a valid goodreads book URL."


def test_live_seed_routes(client, redis_client):
    """The seed's answers (plain strings, the book's four fields) against the document."""
    urls = [BOOK + ".The_Hobbit", "http://m.goodreads.com/book/show/5907", "https://www.goodreads.com/book/show/1",
            NEWS, 7]
    assert post(client, "/parseGoodreadsLinks", urls, 200, valid_request=False) == SCHEDULED_TWO
    for refused in ([], [NEWS], {"urls": [BOOK]}, "just a string", None):
        assert post(client, "/parseGoodreadsLinks", refused, 400) == NOT_BOOK_LINKS
    broken = client.post("/parseGoodreadsLinks", data="[not json", content_type="application/json")
    assert broken.status_code == 400 and check(broken, "post", "/parseGoodreadsLinks") == NOT_BOOK_LINKS
    as_text = client.post("/parseGoodreadsLinks", data=json.dumps([BOOK]), content_type="text/plain")
    assert as_text.status_code == 415
    assert check(as_text, "post", "/parseGoodreadsLinks")["error"]["code"] == "unsupported_media_type"
    huge = client.post("/parseGoodreadsLinks", data="[" + " " * (64 * 1024) + "]", content_type="application/json")
    assert huge.status_code == 413 and check(huge, "post", "/parseGoodreadsLinks")["error"]["code"] == "body_too_large"
    assert get(client, "/getBookInfo", 200, query_string={"url": BOOK}) == NO_META_INFO  # queued
    save_done(redis_client, BOOK, "goodreads_book", book_data())
    info = get(client, "/getBookInfo", 200, query_string={"url": BOOK + "-the-hobbit"})
    assert info == {"title": "The Hobbit", "author": "J.R.R. Tolkien", "rating": 4.29,
                    "description": "In a hole in the ground there lived a hobbit."}
    save_done(redis_client, "https://www.goodreads.com/book/show/2", "goodreads_book",
              {**book_data("2"), "authors": [], "rating": None, "description": None})
    bare = get(client, "/getBookInfo", 200, query_string={"url": "https://www.goodreads.com/book/show/2"})
    assert bare == {"title": "The Hobbit", "author": "", "rating": 0, "description": ""}
    save_failed(redis_client)
    assert get(client, "/getBookInfo", 200, query_string={"url": MISSING_BOOK}) == NO_META_INFO
    for query in ({}, {"url": ""}, {"url": NEWS}, {"url": "javascript:alert(1)"}):
        assert get(client, "/getBookInfo", 400, query_string=query) == BAD_BOOK_URL


def test_live_info_validators(client, redis_client):
    save_done(redis_client, BOOK, "goodreads_book", book_data())
    first = client.get("/info", query_string={"url": BOOK})
    check(first, "get", "/info")
    for validators in ({"If-None-Match": first.headers["ETag"]}, {"If-Modified-Since": first.headers["Last-Modified"]}):
        assert get(client, "/info", 304, query_string={"url": BOOK}, headers=validators) is None


def test_live_too_many_urls(redis_client, base_env):
    client = create_app({**base_env, "MAX_URLS_PER_REQUEST": "3"}).test_client()
    for path in ("/parse", "/parseGoodreadsLinks"):
        assert post(client, path, [BOOK] * 4, 413)["error"]["code"] == "too_many_urls"
    assert post(client, "/parse", {"urls": [BOOK] * 3}, 202)
    assert post(client, "/parseGoodreadsLinks", [BOOK] * 3, 200) == "1 books are scheduled for info parsing."


def test_live_api_tokens(redis_client, base_env):
    client = create_app({**base_env, "API_TOKENS": "alpha,beta"}).test_client()
    for path, accepted in (("/parse", 202), ("/parseGoodreadsLinks", 200)):
        assert post(client, path, [BOOK], 401)["error"]["code"] == "unauthorized"
        post(client, path, [BOOK], 401, headers={"Authorization": "Bearer wrong"})
        post(client, path, [BOOK], accepted, headers={"Authorization": "Bearer beta"})
    get(client, "/info", 202, query_string={"url": BOOK})  # reads stay open


def test_live_callback_urls(redis_client, base_env):
    client = create_app({**base_env, "CALLBACK_SECRET": "s3cret"}).test_client()
    path = "/parse"
    hook = "https://hooks.example.com/done"
    body = post(client, path, {"urls": [BOOK], "callback_url": hook}, 202, valid_request=True)
    assert body["batch_id"]
    body = post(client, path, {"urls": [BOOK], "callback_url": "https://hooks.example.com/done",
                               "callback_format": "slack"}, 202, valid_request=True)
    assert body["batch_id"]
    refused = post(client, path, {"urls": [BOOK], "callback_url": "http://10.0.0.5/hook"}, 400, valid_request=True)
    assert refused["error"]["code"] == "invalid_callback_url"


def test_live_records_of_each_kind(redis_client, base_env):
    client = create_app({**base_env, "ALLOW_ANY_SITE": "true"}).test_client()
    save_done(redis_client, BOOK, "goodreads_book", book_data())
    save_done(redis_client, NEWS, "news_headlines", news_data(["Flood waters recede", "How the storm grew"]))
    save_done(redis_client, PAGE, "page", page_data())
    save_failed(redis_client)
    for path in ("/info",):
        for url, kind, schema in [("http://m.goodreads.com/book/show/5907-the-hobbit?from_search=true", "goodreads_book", "GoodreadsBook"),
                                  ("https://bbc.com/news", "news_headlines", "NewsHeadlines"),
                                  (PAGE + "?utm_source=x#top", "page", "Page")]:
            record = get(client, path, 200, query_string={"url": url})
            assert record["status"] == "done" and record["kind"] == kind and "refresh" not in record
            assert_valid(f"/components/schemas/{schema}", record["data"], f"the {kind} data")
        failed = get(client, path, 200, query_string={"url": MISSING_BOOK})
        assert failed["status"] == "failed" and failed["data"] is None and failed["error"]["code"] == "http_status"
    # A stale record while its refresh is in flight carries `refresh`.
    save_done(redis_client, WSJ, "news_headlines", {**news_data(["Markets rally"]), "site": "wsj.com"}, age=timedelta(hours=1))
    body = post(client, "/parse", [WSJ], 202)
    assert body["accepted"][0]["status"] == "queued"
    refreshing = get(client, "/info", 200, query_string={"url": WSJ})
    assert refreshing["refresh"] == "queued" and refreshing["attempts"] == 0 and refreshing["last_error"] is None
    # The re-fetch's failed attempt shows beside the record, as a first fetch's would in its 202.
    note_failure(fetch_job(redis_client, job_id_for(WSJ)), {"code": "http_status", "message": "HTTP 503"}, 30)
    refreshing = get(client, "/info", 200, query_string={"url": WSJ})
    assert refreshing["status"] == "done" and refreshing["attempts"] == 1
    assert refreshing["last_error"] == {"code": "http_status", "message": "HTTP 503"}
    start_job(redis_client, WSJ, "parsing")
    assert get(client, "/info", 200, query_string={"url": WSJ})["refresh"] == "started"


def test_live_in_flight_and_lost_jobs(client, redis_client):
    post(client, "/parse", [BOOK, NEWS], 202)
    for path in ("/info",):
        queued = get(client, path, 202, query_string={"url": BOOK})
        waiting = queued.pop("waiting")
        assert queued == {"url": BOOK, "status": "queued", "step": None, "job_id": job_id_for(BOOK), "attempts": 0,
                          "retries_left": None, "last_error": None, "next_try_at": None}
        assert waiting["host"] == "www.goodreads.com" and waiting["detail"].startswith("waiting for a free worker")
    start_job(redis_client, NEWS, None)
    assert get(client, "/info", 202, query_string={"url": NEWS})["status"] == "started"
    start_job(redis_client, NEWS, "fetching")
    assert get(client, "/info", 202, query_string={"url": NEWS})["step"] == "fetching"
    fetch_job(redis_client, job_id_for(BOOK)).set_status(JobStatus.FAILED)  # died without a record
    for path in ("/info",):
        lost = get(client, path, 200, query_string={"url": BOOK})
        assert lost["status"] == "failed" and lost["error"]["code"] == "job_failed" and "kind" not in lost


def test_live_info_since(client, redis_client):
    storage = Storage(redis_client)
    older = save_done(redis_client, NEWS, "news_headlines", news_data(["Old story", "Kept story"]), age=timedelta(hours=2))
    storage.push_snapshot(NEWS, snapshots.take(older), 20, 3600)
    current = save_done(redis_client, NEWS, "news_headlines", news_data(["Old story", "Kept story", "New story"]))
    storage.push_snapshot(NEWS, snapshots.take(current), 20, 3600)
    between = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    for path in ("/info",):
        body = get(client, path, 200, query_string={"url": NEWS, "since": between})
        assert [h["title"] for h in body["new_headlines"]] == ["New story"] and len(body["snapshots"]) == 2
        assert datetime.fromisoformat(body["compared_with"]) == older["fetched_at"]  # the snapshot current then
        everything = get(client, path, 200, query_string={"url": NEWS, "since": "2000-01-01T00:00:00Z"})
        assert everything["compared_with"] is None and len(everything["new_headlines"]) == 3
        get(client, path, 200, query_string={"url": NEWS, "since": "2026-01-31"})  # a bare date is midnight UTC
        bad = get(client, path, 400, query_string={"url": NEWS, "since": "yesterday"})
        assert bad["error"]["code"] == "invalid_since"
    save_done(redis_client, BOOK, "goodreads_book", book_data())
    book = get(client, "/info", 200, query_string={"url": BOOK, "since": between})
    assert "since" not in book  # only news records compare snapshots


def test_live_info_errors(client):
    for path in ("/info",):
        assert get(client, path, 400)["error"]["code"] == "missing_url"
        assert get(client, path, 400, query_string={"url": ""})["error"]["code"] == "missing_url"
        for url in ("javascript:alert(1)", "http://[::1]/", "http://127.0.0.1/admin"):
            assert get(client, path, 400, query_string={"url": url})["error"]["code"] == "invalid_url"
        for url in (NEWS, "https://example.com/never-submitted"):
            assert get(client, path, 404, query_string={"url": url})["error"]["code"] == "not_found"


def test_live_batches(client, redis_client):
    save_done(redis_client, BOOK, "goodreads_book", book_data())
    save_failed(redis_client)
    urls = [BOOK + ".The_Hobbit", MISSING_BOOK, NEWS, WSJ, "https://www.bbc.co.uk/news", "https://www.goodreads.com/book/show/1"]
    batch_id = post(client, "/parse", urls, 202)["batch_id"]
    path = "/batches/{batch_id}"
    batch = get(client, path, 200, f"/batches/{batch_id}")
    assert batch["counts"] == {"done": 1, "failed": 1, "queued": 4} and batch["finished"] is False
    start_job(redis_client, WSJ, "saving")
    lost = fetch_job(redis_client, job_id_for("https://www.bbc.co.uk/news"))
    lost.set_status(JobStatus.FAILED)
    gone = fetch_job(redis_client, job_id_for("https://www.goodreads.com/book/show/1"))
    make_queue("goodreads", redis_client).remove(gone)
    gone.delete()
    batch = get(client, path, 200, f"/batches/{batch_id}")
    assert batch["counts"] == {"done": 1, "failed": 2, "queued": 1, "started": 1, "expired": 1}
    assert [item["step"] for item in batch["items"]] == [None, None, None, "saving", None, None]
    finished_id = post(client, "/parse", [BOOK], 202)["batch_id"]
    assert get(client, path, 200, f"/batches/{finished_id}")["finished"] is True
    for unknown in ("0123456789abcdef0123456789abcdef", "not-a-batch", "..%2F..%2Fetc"):
        assert get(client, path, 404, f"/batches/{unknown}")["error"]["code"] == "not_found"


def test_live_records(client, redis_client):
    urls = [f"https://www.goodreads.com/book/show/{n}" for n in range(1, 8)]
    for n, url in enumerate(urls, start=1):
        save_done(redis_client, url, "goodreads_book", book_data(str(n)), age=timedelta(seconds=n))
    save_failed(redis_client)
    seen, cursor = [], None
    for _ in range(100):
        page = get(client, "/records", 200, query_string={"limit": "2", **({"cursor": cursor} if cursor else {})})
        seen += [record["url"] for record in page["records"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == [MISSING_BOOK, *urls]  # newest first, each once
    assert get(client, "/records", 200)["records"]  # the defaults
    batch_id = post(client, "/parse", urls[:2] + [NEWS], 202)["batch_id"]
    listed = get(client, "/records", 200, query_string={"batch": batch_id, "kind": "book", "since": "2026-01-01"})
    assert [record["url"] for record in listed["records"]] == urls[:2] and listed["next_cursor"] is None
    for query in ({"cursor": "-1"}, {"cursor": "abc"}, {"limit": "0"}, {"limit": "5000"}, {"kind": "books"}):
        assert get(client, "/records", 400, query_string=query)["error"]["code"] == "invalid_query"
    assert get(client, "/records", 400, query_string={"since": "soon"})["error"]["code"] == "invalid_since"
    for batch in ("f" * 32, "nope"):
        get(client, "/records", 404, query_string={"batch": batch})


def test_live_record_exports(client, redis_client):
    save_done(redis_client, BOOK, "goodreads_book", book_data())
    save_done(redis_client, NEWS, "news_headlines", news_data(["One", "Two"]))
    save_done(redis_client, PAGE, "page", page_data())
    lines = get(client, "/records.jsonl", 200, query_string={"kind": "news"}).splitlines()
    assert [json.loads(line)["url"] for line in lines] == [NEWS]
    assert len(get(client, "/records.jsonl", 200).splitlines()) == 3
    for kind, rows in (("book", 2), ("news", 3), ("page", 2)):
        assert len(get(client, "/records.csv", 200, query_string={"kind": kind}).splitlines()) == rows
    assert len(get(client, "/records.csv", 200).splitlines()) == 5  # every kind: a header and 4 rows
    for path in ("/records.jsonl", "/records.csv"):
        assert get(client, path, 400, query_string={"kind": "all"})["error"]["code"] == "invalid_query"
        assert get(client, path, 404, query_string={"batch": "f" * 32, "kind": "book"})["error"]["code"] == "not_found"


def test_live_records_index_building(client, redis_client):
    redis_client.set(RECORDS_INDEX_LOCK, "another process", ex=60)  # and nothing marks the index built
    for path in ("/records", "/records.jsonl", "/records.csv"):
        assert get(client, path, 503, query_string={"kind": "book"})["error"]["code"] == "index_building"


def test_live_jobs(client, redis_client):
    post(client, "/parse", [BOOK, NEWS, WSJ], 202)
    path = "/jobs/{job_id}"
    job = get(client, path, 200, f"/jobs/{job_id_for(BOOK)}")
    assert job["status"] == "queued" and job["url"] == BOOK and job["error"] is None
    start_job(redis_client, NEWS, "fetching")
    assert get(client, path, 200, f"/jobs/{job_id_for(NEWS)}")["step"] == "fetching"
    fetch_job(redis_client, job_id_for(WSJ)).set_status(JobStatus.FAILED)
    assert get(client, path, 200, f"/jobs/{job_id_for(WSJ)}")["error"]["code"] == "job_failed"
    for unknown in ("nope", "a%20b", "x" * 200):
        assert get(client, path, 404, f"/jobs/{unknown}")["error"]["code"] == "not_found"


def test_live_health(client, redis_client):
    post(client, "/parse", [BOOK], 202)
    body = get(client, "/healthz", 200)
    assert body["status"] == "degraded" and body["workers"] == 0 and body["queues"]["goodreads"] == 1
    worker = Worker(["goodreads"], connection=redis_client)
    worker.register_birth()
    try:
        assert get(client, "/healthz", 200) == {**body, "status": "ok", "workers": 1}
    finally:
        worker.register_death()


CONTROL_CALLS = [  # (method, documented path, URL, request options): one call of each control operation
    ("delete", "/jobs/{job_id}", f"/jobs/{job_id_for(BOOK)}", {}),
    ("post", "/batches/{batch_id}/cancel", "/batches/0123456789abcdef0123456789abcdef/cancel", {"json": {}}),
    ("delete", "/records", "/records", {"query_string": {"url": BOOK}}),
    ("get", "/batches", "/batches", {}),
]


def cancel_batch(client, batch_id: str, body: object, status: int, valid_request: bool | None = None) -> dict:
    """post() for POST /batches/{batch_id}/cancel: the URL names the batch, the document its template."""
    path = "/batches/{batch_id}/cancel"
    if valid_request is not None:
        assert (not request_errors(path, body)) is valid_request, f"request body validity: {body!r}"
    response = client.post(f"/batches/{batch_id}/cancel", json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    return check(response, "post", path)


def test_live_control(redis_client, base_env):
    """Cancel a job, a batch; delete a record; list batches; and every refusal of theirs."""
    client = create_app({**base_env, "FETCH_RETRIES": "2"}).test_client()
    first = post(client, "/parse", [BOOK, NEWS], 202)["batch_id"]
    assert post(client, "/parse", ["ftp://example.com/x"], 400)["batch_id"] is None  # no batch: never listed
    job_path, cancel_path = "/jobs/{job_id}", "/batches/{batch_id}/cancel"
    start_job(redis_client, NEWS, "fetching")
    refused = check(client.delete(f"/jobs/{job_id_for(NEWS)}"), "delete", job_path)
    assert refused["error"]["code"] == "not_cancelable" and "started" in refused["error"]["message"]
    canceled = check(client.delete(f"/jobs/{job_id_for(BOOK)}"), "delete", job_path)
    assert canceled == {"job_id": job_id_for(BOOK), "status": "canceled"}
    assert get(client, "/info", 200, query_string={"url": BOOK})["status"] == "canceled"
    assert get(client, job_path, 200, f"/jobs/{job_id_for(BOOK)}")["status"] == "canceled"
    for unknown in ("nope", "f" * 64):
        assert check(client.delete(f"/jobs/{unknown}"), "delete", job_path)["error"]["code"] == "not_found"
    third = post(client, "/parse", [WSJ, BOOK], 202)["batch_id"]
    answer = cancel_batch(client, third, {}, 200, valid_request=True)
    assert [item["canonical_url"] for item in answer["canceled"]] == [WSJ, BOOK] and answer["not_canceled"] == []
    batch = get(client, "/batches/{batch_id}", 200, f"/batches/{third}")
    assert batch["counts"] == {"canceled": 2} and batch["finished"] is True
    cancel_batch(client, first, {"all": True}, 400, valid_request=False)
    as_form = client.post(f"/batches/{first}/cancel", data="{}", content_type="application/x-www-form-urlencoded")
    assert as_form.status_code == 415 and check(as_form, "post", cancel_path)
    cancel_batch(client, "0123456789abcdef0123456789abcdef", {}, 404)
    listed = get(client, "/batches", 200, query_string={"limit": "1"})
    assert [card["batch_id"] for card in listed["batches"]] == [third] and listed["next_cursor"]
    rest = get(client, "/batches", 200, query_string={"limit": "5", "cursor": listed["next_cursor"]})
    assert [card["batch_id"] for card in rest["batches"]] == [first] and rest["next_cursor"] is None
    for query in ({"limit": "0"}, {"limit": "101"}, {"cursor": "x"}):
        assert get(client, "/batches", 400, query_string=query)["error"]["code"] == "invalid_query"
    save_done(redis_client, BOOK, "goodreads_book", book_data())
    deleted = check(client.delete("/records", query_string={"url": BOOK + "-the-hobbit"}), "delete", "/records")
    assert deleted == {"url": BOOK, "deleted": True, "refresh": None, "job_id": job_id_for(BOOK)}
    assert check(client.delete("/records", query_string={"url": BOOK}), "delete", "/records")["error"]["code"] == "not_found"
    assert check(client.delete("/records"), "delete", "/records")["error"]["code"] == "missing_url"
    guarded = create_app({**base_env, "API_TOKENS": "alpha"}).test_client()
    for method, path, url, kwargs in CONTROL_CALLS[:3]:
        response = getattr(guarded, method)(url, **kwargs)
        assert response.status_code == 401 and check(response, method, path)["error"]["code"] == "unauthorized"


def test_live_redis_down(base_env):
    client = create_app({**base_env, "REDIS_URL": "redis://127.0.0.1:1/0"}).test_client()
    calls = [
        ("post", "/parse", "/parse", {"json": [BOOK]}),
        ("post", "/parseGoodreadsLinks", "/parseGoodreadsLinks", {"json": [BOOK]}),
        ("get", "/info", "/info", {"query_string": {"url": BOOK}}),
        ("get", "/getBookInfo", "/getBookInfo", {"query_string": {"url": BOOK}}),
        ("get", "/batches/{batch_id}", "/batches/0123456789abcdef0123456789abcdef", {}),
        ("get", "/records", "/records", {}),
        ("get", "/records.jsonl", "/records.jsonl", {}),
        ("get", "/records.csv", "/records.csv", {"query_string": {"kind": "book"}}),
        ("get", "/jobs/{job_id}", f"/jobs/{job_id_for(BOOK)}", {}),
        *CONTROL_CALLS,
        ("get", "/healthz", "/healthz", {}),
    ]
    documented = {(m.upper(), p) for p, m, op in operations() if "503" in op["responses"]}
    assert {(m.upper(), p) for m, p, _, _ in calls} == documented
    for method, path, url, kwargs in calls:
        response = getattr(client, method)(url, **kwargs)
        assert response.status_code == 503, (path, response.get_data(as_text=True))
        assert check(response, method, path)["error"]["code"] == "redis_unavailable"


def test_live_rate_limited(redis_client, base_env):
    """Over its limits a client gets 429 + Retry-After from every limited operation; exempt ones still answer."""
    client = create_app({**base_env, "RATE_LIMIT_WRITE": "1/minute", "RATE_LIMIT_READ": "1/minute"}).test_client()
    calls = [
        ("post", "/parse", "/parse", {"json": [BOOK]}),
        ("post", "/parseGoodreadsLinks", "/parseGoodreadsLinks", {"json": [BOOK]}),
        ("get", "/info", "/info", {"query_string": {"url": BOOK}}),
        ("get", "/getBookInfo", "/getBookInfo", {"query_string": {"url": BOOK}}),
        ("get", "/batches/{batch_id}", "/batches/0123456789abcdef0123456789abcdef", {}),
        ("get", "/records", "/records", {}),
        ("get", "/records.jsonl", "/records.jsonl", {}),
        ("get", "/records.csv", "/records.csv", {"query_string": {"kind": "book"}}),
        ("get", "/jobs/{job_id}", f"/jobs/{job_id_for(BOOK)}", {}),
        *CONTROL_CALLS,
        ("get", "/healthz", "/healthz", {}),
        ("get", "/metrics", "/metrics", {}),
        ("get", "/", "/", {}),
        ("get", "/openapi.json", "/openapi.json", {}),
        ("get", "/docs", "/docs", {}),
    ]
    assert {(m, p) for m, p, _, _ in calls} == {(m, p) for p, m, _ in operations()}, "every operation, once"
    # The one write and the one read of this minute: two buckets, so the write does not use up the read.
    post(client, "/parse", [BOOK], 202)
    get(client, "/info", 202, query_string={"url": BOOK})
    limited = set()
    for method, path, url, kwargs in calls:
        response = getattr(client, method)(url, **kwargs)
        body = check(response, method, path)  # an undocumented 429 fails here
        if response.status_code == 429:
            assert body["error"]["code"] == "rate_limited"
            assert 1 <= int(response.headers["Retry-After"]) <= 60
            limited.add((method, path))
    documented = {(m, p) for p, m, op in operations() if "429" in op["responses"]}
    assert limited == documented, "429 is documented exactly where the limits apply"
    exempt = {rule.rule for rule in client.application.url_map.iter_rules() if rule.endpoint in ratelimit.EXEMPT_ENDPOINTS}
    assert {p for p, _, op in operations() if "429" not in op["responses"]} == exempt
    # Another client (a different address) has buckets of its own.
    other = client.get("/records", environ_overrides={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200 and check(other, "get", "/records")


def test_live_documents(client):
    served = get(client, "/openapi.json", 200)
    assert served == DOC
    again = client.get("/openapi.json")
    assert again.get_data() == client.get("/openapi.json").get_data()
    get(client, "/docs", 200)
    get(client, "/", 200)
    metrics = get(client, "/metrics", 200)
    assert "# TYPE metaparse_queue_depth gauge" in metrics


# ---- 4. the HTML page -------------------------------------------------------------------------


def test_docs_page_shows_every_operation_and_loads_nothing(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert html.lstrip().lower().startswith("<!doctype html>")
    for path, method, op in operations():
        anchor = f'id="op-{op["operationId"]}"'
        assert anchor in html, f"{method.upper()} {path} is not on /docs"
        section = html[html.index(anchor):]
        section = section[:section.index("</article>")]
        assert f"<code>{path}</code>" in section and f">{method.upper()}<" in section
        for status in op["responses"]:
            assert f">{status}</span>" in section, f"{method.upper()} {path} {status} is not on /docs"
        for i in range(len(op.get("parameters", []))):
            name = follow(pointer_of("paths", path, method, "parameters", i))[1]["name"]
            assert f"<code>{name}</code>" in section, f"parameter {name} of {method.upper()} {path}"
        if "requestBody" in op:
            assert "Request body" in section
        assert section.count("<pre><code>") >= len(op["responses"]), f"{method.upper()} {path}: an example per response"
    for name in DOC["components"]["schemas"]:
        assert f'id="schema-{name}"' in html
    assert "Callback <code>batchFinished</code>" in html and "X-Metaparse-Signature" in html
    # Self-contained: nothing to fetch, nothing to run.
    lowered = html.lower()
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "url(", 'src="', "http-equiv"):
        assert needle not in lowered, f"/docs must not contain {needle}"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_docs_page_links_resolve(client):
    html = client.get("/docs").get_data(as_text=True)
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate ids on /docs"
    assert set(re.findall(r'href="#([^"]+)"', html)) <= set(ids), "a link on /docs points nowhere"


def test_docs_page_escapes_document_text(client):
    html = client.get("/docs").get_data(as_text=True)
    assert "&lt;token&gt;" in html and "<token>" not in html


# ---- coverage of the live tests --------------------------------------------------------------


def live_tests() -> list[Callable[..., None]]:
    return [test for name, test in globals().items() if name.startswith("test_live_")]


def test_every_documented_response_was_seen_live(redis_client, base_env):
    """Runs every live test itself, each on an empty database, so the answer does not hang on
    which tests ran before in this session (alone, it would otherwise have seen nothing)."""
    SEEN.clear()
    for live_test in live_tests():
        redis_client.flushdb()
        fixtures = {"client": create_app(base_env).test_client(), "redis_client": redis_client, "base_env": base_env}
        live_test(**{name: fixtures[name] for name in inspect.signature(live_test).parameters})
    documented = {(method.upper(), path, status) for path, method, op in operations() for status in op["responses"]}
    assert documented - SEEN == set(), "documented responses never seen live"
