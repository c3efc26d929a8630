"""The one ASGI app on `http.listen`: the API under `/api/v1` (OpenAPI 3.1 at
`/openapi.json`, generated from the same pydantic models that validate the requests, and
Swagger UI at `/docs`), the provider webhooks, health, and `/metrics` when it shares the
address. docs/http-api.md describes the API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from stormd.daemon import __version__
from stormd.daemon.http import docs, ops, problems
from stormd.daemon.http.api import (
    automations,
    campaigns,
    customers,
    reports,
    segments,
    store,
    templates,
)
from stormd.daemon.http.auth import Unauthenticated
from stormd.daemon.http.conventions import known_query
from stormd.handlers.kernel.context import JobContext

TITLE = "stormd API"
DESCRIPTION = """The marketing brain of a StormCom store, over HTTP.

Every request carries `Authorization: Bearer <key>` (`stormd keys create --store S`). A
store key acts on its store alone: on another store's path it gets 404, as a store that
does not exist does. Errors are `application/problem+json` with a `detail` that says what
to change. Lists page with `limit` and `cursor` (`nextCursor`), sort with `sort`; updates
need `If-Match` with the resource's `ETag`; sends and spends take an `Idempotency-Key`."""
API = "/api/v1"
STORE = f"{API}/stores/{{storeId}}"
# Families of resources under /api/v1/stores/{storeId}.
RESOURCES = (segments.router, campaigns.router, templates.router, automations.router,
             reports.router, customers.router, store.router)


def _errors(doc: dict[str, Any]) -> dict[str, Any]:
    """Every operation of the API declares the problems it may answer, as
    application/problem+json (FastAPI's own validation schema is not used: validation
    errors are problems too)."""
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in doc.get("paths", {}).items():
        if not path.startswith(API):
            continue
        for method, op in operations.items():
            statuses = {"400": "Malformed request (not JSON, nested too deep)",
                        "401": "No API key, or a wrong or revoked one",
                        "422": "Invalid request: `errors` names each bad field"}
            if "{storeId}" in path:
                statuses["404"] = "No such store (or not this key's), or no such resource"
            if method in ("post", "put", "patch", "delete"):
                statuses["409"] = "Conflicts with the resource's current state"
                statuses["413"] = "Request body over 1 MiB"
            if method in ("put", "patch", "delete"):
                statuses["412"] = "If-Match no longer matches the resource's ETag"
                statuses["428"] = "If-Match is required"
            responses = op.setdefault("responses", {})
            for status, text in statuses.items():
                responses[status] = {"description": text,
                                     "content": {"application/problem+json": {"schema": ref}}}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return doc


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, openapi_version="3.1.0",
                          description=app.description, routes=app.routes)
        problem = problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, schema in problem.pop("$defs", {}).items():
            doc.setdefault("components", {}).setdefault("schemas", {})[name] = schema
        doc["components"]["schemas"]["Problem"] = problem
        app.openapi_schema = _errors(doc)
    return app.openapi_schema


def build_app(job: JobContext, pipeline: Any, readiness: ops.Readiness, *,
              metrics: bool = True) -> FastAPI:
    app = FastAPI(title=TITLE, version=__version__, description=DESCRIPTION,
                  openapi_url="/openapi.json", docs_url=None, redoc_url=None,
                  redirect_slashes=False)
    app.state.job = job
    problems.install(app)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        return problems.problem(401, str(exc), instance=request.url.path,
                                headers={"WWW-Authenticate": 'Bearer realm="stormd"'})

    app.add_middleware(problems.BodyLimits)
    app.include_router(ops.health_routes(readiness))
    if metrics:
        app.include_router(ops.metrics_routes())
    if pipeline is not None:
        app.include_router(ops.webhook_routes(pipeline))
    app.include_router(docs.docs_routes(TITLE))
    app.mount(docs.ASSETS_URL, docs.assets(), name="docs-assets")
    app.include_router(store.stores, dependencies=[Depends(known_query)])
    in_store = APIRouter(prefix=STORE, dependencies=[Depends(known_query)])
    for router in RESOURCES:
        in_store.include_router(router)
    app.include_router(in_store)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def build_metrics_app() -> FastAPI:
    """`/metrics` alone, for a `metrics.listen` of its own."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(ops.metrics_routes())
    return app
