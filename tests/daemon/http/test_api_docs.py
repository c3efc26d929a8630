"""`/openapi.json` is a valid OpenAPI 3.1 document of every API route, and `/docs` works
offline: every script, style sheet and icon it loads comes from the daemon itself."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
async def test_openapi_document_is_valid_3_1(api):
    a = await api()
    doc = (await a.client().get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)
    ops = [op for path in doc["paths"].values() for op in path.values()]
    assert all(op["responses"]["401"]["content"]["application/problem+json"] for op in ops)
    assert "/api/v1/stores/{storeId}/segments/{slug}" in doc["paths"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]


@SQLITE_ONLY
async def test_docs_page_loads_nothing_from_another_host(api):
    a = await api()
    client = a.client()
    page = await client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert links and all(link.startswith("/") and not link.startswith("//") for link in links)
    assert "http://" not in page.text and "https://" not in page.text
    assert '"validatorUrl": null' in page.text  # no badge fetched from an outside validator
    for link in links:
        asset = await client.get(link)
        assert asset.status_code == 200 and len(asset.content) > 100, link


@SQLITE_ONLY
async def test_metrics_on_a_listener_of_its_own(api):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = await api(metrics={"listen": f"127.0.0.1:{port}"})
    host, bound = a.daemon.http.bound["metrics"]
    assert bound == port and a.daemon.http.bound["http"][1] != port
    metrics = a.client()
    scraped = await metrics.get(f"http://{host}:{port}/metrics")
    assert scraped.status_code == 200 and "stormd_events_total" in scraped.text
    assert (await metrics.get(f"http://{host}:{port}/healthz")).status_code == 404
    assert (await metrics.get("/metrics")).status_code == 404  # not on the API's listener
    assert (await metrics.get("/healthz")).status_code == 200
