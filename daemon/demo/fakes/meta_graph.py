"""A local WhatsApp Cloud API (Graph API) for tests and the demo: templates, sends, webhooks.

Wire format as Meta documents it:
- Templates: POST/GET /<version>/<WABA-ID>/message_templates; a new template answers
  {"id", "status": "PENDING", "category"}; the list answers {"data": [...], "paging":
  {"cursors": {"before", "after"}, "next"}}.
  https://developers.facebook.com/docs/whatsapp/business-management-api/message-templates
- Sends: POST /<version>/<PHONE-NUMBER-ID>/messages with messaging_product "whatsapp",
  type "template", template {name, language {code}, components [{type, parameters}]};
  answers {"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id"}]}.
- Errors: {"error": {"message": "(#<code>) <title>", "type", "code", "error_data":
  {"messaging_product", "details"}, "fbtrace_id"}}; 190 bad token (401), 132000 parameter
  count (400), 132001 template missing in that language or not approved (404), 132012
  parameter format (400), 100 invalid parameter (400), 100/33 unknown node.
  https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
  https://developers.facebook.com/docs/graph-api/guides/error-handling
  The 132001 body is the one real accounts get, e.g. github.com/tawn33y/whatsapp-cloud-api
  issue 57: "(#132001) Template name does not exist in the translation", details
  "template name (x) does not exist in en_US".
- Webhooks: field "message_template_status_update" with value {event, message_template_id,
  message_template_name, message_template_language, reason, message_template_category}
  (payloads as in the official reference and the pywa SDK's test data,
  github.com/david-lev/pywa/blob/main/tests/data/updates/template_status_update.json); status updates under field "messages"
  with value.statuses[]. Every POST carries X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of
  the raw body keyed with the app secret>. Subscribing a callback URL is verified first with
  GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=.. that must echo the challenge.
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/message_template_status_update

Not reproduced: template creation errors beyond the ones checked here carry Meta's
2388xxx subcodes in reality; only the duplicate name/language case uses one (2388024),
taken from integrators' reports rather than Meta's reference.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ._server import Clock, Delivery, FakeServer, compact_json, read_json

SIGNATURE_HEADER = "X-Hub-Signature-256"
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
_VERSION = r"v\d+\.\d+"
_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_VARIABLE = re.compile(r"\{\{\s*(\d+)\s*\}\}")


def sign(app_secret: str | bytes, body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta sends with a webhook body."""
    key = app_secret.encode() if isinstance(app_secret, str) else app_secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(app_secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is Meta's signature of exactly these bytes."""
    return bool(header) and hmac.compare_digest(sign(app_secret, body), header.strip())


@dataclass
class Template:
    id: str
    waba_id: str
    name: str
    language: str
    category: str
    components: list[dict[str, Any]]
    status: str = "PENDING"
    rejected_reason: str = "NONE"

    def component(self, kind: str) -> dict[str, Any] | None:
        for component in self.components:
            if str(component.get("type", "")).upper() == kind:
                return component
        return None

    @property
    def body_variables(self) -> int:
        body = self.component("BODY") or {}
        return len(set(_VARIABLE.findall(str(body.get("text", "")))))

    @property
    def header_format(self) -> str | None:
        header = self.component("HEADER")
        return str(header.get("format", "TEXT")).upper() if header else None

    def as_graph(self, fields: list[str] | None = None) -> dict[str, Any]:
        full = {
            "name": self.name, "components": self.components, "language": self.language,
            "status": self.status, "category": self.category, "id": self.id,
        }
        if self.status == "REJECTED":
            full["rejected_reason"] = self.rejected_reason
        if fields:
            return {k: v for k, v in full.items() if k in fields or k == "id"}
        return full


@dataclass
class SentMessage:
    id: str
    phone_number_id: str
    to: str
    template: str
    language: str
    body_parameters: list[str]
    header: dict[str, Any] | None
    text: str
    statuses: list[str] = field(default_factory=list)


class GraphError(Exception):
    def __init__(self, http_status: int, code: int, message: str, *, details: str | None = None,
                 subcode: int | None = None, kind: str = "OAuthException",
                 user_title: str | None = None, user_msg: str | None = None):
        super().__init__(message)
        self.http_status = http_status
        self.body: dict[str, Any] = {"message": message, "type": kind, "code": code}
        if subcode is not None:
            self.body["error_subcode"] = subcode
        if user_title:
            self.body["is_transient"] = False
            self.body["error_user_title"] = user_title
            self.body["error_user_msg"] = user_msg or user_title
        if details is not None:
            self.body["error_data"] = {"messaging_product": "whatsapp", "details": details}
        self.body["fbtrace_id"] = "A" + secrets.token_urlsafe(16)

    def response(self) -> web.Response:
        return web.json_response({"error": self.body}, status=self.http_status)


def _invalid(user_title: str, user_msg: str, *, subcode: int | None = None) -> GraphError:
    return GraphError(400, 100, "Invalid parameter", subcode=subcode,
                      user_title=user_title, user_msg=user_msg)


def _required(parameter: str) -> GraphError:
    return GraphError(400, 100, f"(#100) The parameter {parameter} is required.")


class FakeMetaGraph(FakeServer):
    """One WhatsApp Business Account with one phone number, an app secret and a token."""

    def __init__(self, *, access_token: str = "EAAG-test-token", app_secret: str = "app-secret",
                 waba_id: str = "102290129340398", phone_number_id: str = "106540352242922",
                 display_phone_number: str = "8801700000000", callback_url: str | None = None,
                 clock: Clock | None = None):
        self.access_token = access_token
        self.app_secret = app_secret
        self.waba_id = waba_id
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.callback_url = callback_url
        self.templates: dict[str, Template] = {}
        self.messages: list[SentMessage] = []
        self._next_template_id = 1689556908129832
        super().__init__(clock=clock)

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"/{{version:{_VERSION}}}/{{node}}/message_templates", self._create)
        router.add_get(f"/{{version:{_VERSION}}}/{{node}}/message_templates", self._list)
        router.add_post(f"/{{version:{_VERSION}}}/{{node}}/messages", self._send)

    # ---------------------------------------------------------------- for tests and the demo

    def template(self, name: str, language: str) -> Template | None:
        for template in self.templates.values():
            if template.name == name and template.language == language:
                return template
        return None

    async def subscribe(self, callback_url: str, verify_token: str) -> bool:
        """Verify a callback URL as Meta does before it sends anything there."""
        challenge = str(secrets.randbelow(10**9))
        query = urlencode({"hub.mode": "subscribe", "hub.verify_token": verify_token,
                           "hub.challenge": challenge})
        sep = "&" if "?" in callback_url else "?"
        delivery = await self.call_merchant("GET", f"{callback_url}{sep}{query}")
        if delivery.status == 200 and delivery.response_body.decode().strip() == challenge:
            self.callback_url = callback_url
            return True
        return False

    async def review(self, template_id: str, event: str, reason: str | None = None) -> Delivery | None:
        """Meta's review of a pending template: sets its status and posts the webhook."""
        template = self.templates[template_id]
        template.status = event
        template.rejected_reason = (reason or "NONE") if event == "REJECTED" else "NONE"
        value = {
            "event": event,
            "message_template_id": int(template.id),
            "message_template_name": template.name,
            "message_template_language": template.language,
            "reason": reason or "NONE",
            "message_template_category": template.category,
        }
        return await self._notify("message_template_status_update", value)

    async def approve(self, template_id: str) -> Delivery | None:
        return await self.review(template_id, "APPROVED")

    async def reject(self, template_id: str, reason: str = "INVALID_FORMAT") -> Delivery | None:
        return await self.review(template_id, "REJECTED", reason)

    async def report_status(self, message_id: str, status: str, *,
                            errors: list[dict[str, Any]] | None = None) -> Delivery | None:
        """A delivery report (sent, delivered, read, failed) for a message sent earlier."""
        message = next(m for m in self.messages if m.id == message_id)
        message.statuses.append(status)
        entry: dict[str, Any] = {
            "id": message.id, "status": status,
            "timestamp": str(int(self.clock().timestamp())), "recipient_id": message.to,
        }
        if errors:
            entry["errors"] = errors
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": self.display_phone_number,
                         "phone_number_id": self.phone_number_id},
            "statuses": [entry],
        }
        return await self._notify("messages", value)

    async def _notify(self, field_name: str, value: dict[str, Any]) -> Delivery | None:
        if not self.callback_url:
            return None
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{
                "id": self.waba_id,
                "time": int(self.clock().timestamp()),
                "changes": [{"value": value, "field": field_name}],
            }],
        }
        body = compact_json(payload)
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua",
                   SIGNATURE_HEADER: sign(self.app_secret, body)}
        return await self.call_merchant("POST", self.callback_url, body=body, headers=headers)

    # ---------------------------------------------------------------- the Graph API

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        token = token or request.query.get("access_token")
        if not token:
            raise GraphError(401, 104, "An access token is required to request this resource.")
        if not hmac.compare_digest(token, self.access_token):
            raise GraphError(401, 190, "Invalid OAuth access token - Cannot parse access token")

    def _unknown_node(self, request: web.Request) -> GraphError:
        verb = "post" if request.method == "POST" else "get"
        return GraphError(
            400, 100,
            f"Unsupported {verb} request. Object with ID '{request.match_info['node']}' does not"
            " exist, cannot be loaded due to missing permissions, or does not support this"
            " operation. Please read the Graph API documentation at"
            " https://developers.facebook.com/docs/graph-api",
            subcode=33, kind="GraphMethodException")

    async def _create(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            if request.match_info["node"] != self.waba_id:
                raise self._unknown_node(request)
            body = await read_json(request)
            template = self._validated_template(body if isinstance(body, dict) else {})
        except GraphError as error:
            return error.response()
        self.templates[template.id] = template
        return web.json_response(
            {"id": template.id, "status": template.status, "category": template.category})

    def _validated_template(self, body: dict[str, Any]) -> Template:
        for parameter in ("name", "language", "category", "components"):
            if not body.get(parameter):
                raise _required(parameter)
        name, language = str(body["name"]), str(body["language"])
        category = str(body["category"]).upper()
        if not _NAME.match(name):
            raise _invalid("Invalid template name",
                           "Template names can only contain lowercase letters, numbers and"
                           " underscores.")
        if category not in CATEGORIES:
            raise _invalid("Invalid category", f"Category must be one of {', '.join(CATEGORIES)}.")
        components = body["components"]
        if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
            raise _invalid("Invalid components", "components must be a list of objects.")
        if self.template(name, language) is not None:
            raise _invalid(
                "Content in This Language Already Exists",
                f"There is already {language} content for this template. You can create a new"
                " template and try again.", subcode=2388024)
        template = Template(id=str(self._next_template_id), waba_id=self.waba_id, name=name,
                            language=language, category=category, components=components)
        body_component = template.component("BODY")
        if body_component is None or not str(body_component.get("text", "")).strip():
            raise _invalid("Message body is missing", "A template needs a BODY component with text.")
        numbers = sorted({int(n) for n in _VARIABLE.findall(body_component["text"])})
        if numbers != list(range(1, len(numbers) + 1)):
            raise _invalid("Variable parameters are not sequential",
                           "Variables must be numbered {{1}}, {{2}} ... without gaps.")
        if numbers:
            example = (body_component.get("example") or {}).get("body_text")
            if not (isinstance(example, list) and example and isinstance(example[0], list)
                    and len(example[0]) == len(numbers)):
                raise _invalid("Sample values are missing",
                               f"The body has {len(numbers)} variables: give example.body_text"
                               f" with {len(numbers)} sample values.")
        header = template.component("HEADER")
        if header is not None and template.header_format in ("IMAGE", "VIDEO", "DOCUMENT"):
            handles = (header.get("example") or {}).get("header_handle")
            if not (isinstance(handles, list) and handles):
                raise _invalid("Media sample is missing",
                               "A media header needs a sample: example.header_handle.")
        self._next_template_id += 1
        return template

    async def _list(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            if request.match_info["node"] != self.waba_id:
                raise self._unknown_node(request)
        except GraphError as error:
            return error.response()
        query = request.query
        rows = [t for t in self.templates.values() if t.waba_id == self.waba_id]
        if "status" in query:
            wanted = {s.strip().upper() for s in query["status"].split(",")}
            rows = [t for t in rows if t.status in wanted]
        if "language" in query:
            rows = [t for t in rows if t.language == query["language"]]
        if "category" in query:
            rows = [t for t in rows if t.category == query["category"].upper()]
        if "name" in query:
            rows = [t for t in rows if query["name"] in t.name]
        try:
            limit = max(1, min(int(query.get("limit") or 25), 1000))
        except ValueError:
            return _invalid("Invalid limit", "limit must be a number.").response()
        start = _cursor_index(query.get("after"), 1) if "after" in query else 0
        if "before" in query:
            start = max(0, _cursor_index(query["before"], 0) - limit)
        page = rows[start:start + limit]
        fields = [f.strip() for f in query.get("fields", "").split(",") if f.strip()] or None
        result: dict[str, Any] = {"data": [t.as_graph(fields) for t in page]}
        if page:
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start),
                                                  "after": _cursor(start + len(page) - 1)}}
            if start + len(page) < len(rows):
                params = {k: v for k, v in query.items() if k not in ("after", "before")}
                params["after"] = _cursor(start + len(page) - 1)
                paging["next"] = f"{self.base_url}{request.path}?{urlencode(params)}"
            if start > 0:
                params = {k: v for k, v in query.items() if k not in ("after", "before")}
                params["before"] = _cursor(start)
                paging["previous"] = f"{self.base_url}{request.path}?{urlencode(params)}"
            result["paging"] = paging
        return web.json_response(result)

    async def _send(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            if request.match_info["node"] != self.phone_number_id:
                raise self._unknown_node(request)
            body = await read_json(request)
            message = self._validated_send(body if isinstance(body, dict) else {})
        except GraphError as error:
            return error.response()
        self.messages.append(message)
        return web.json_response({
            "messaging_product": "whatsapp",
            "contacts": [{"input": message.to, "wa_id": re.sub(r"\D", "", message.to)}],
            "messages": [{"id": message.id, "message_status": "accepted"}],
        })

    def _validated_send(self, body: dict[str, Any]) -> SentMessage:
        if body.get("messaging_product") != "whatsapp":
            raise _required("messaging_product")
        if not body.get("to"):
            raise _required("to")
        if body.get("type", "text") != "template":
            raise GraphError(400, 100, "(#100) Invalid parameter",
                             details="This test server accepts template messages only.")
        spec = body.get("template")
        if not isinstance(spec, dict) or not spec.get("name"):
            raise _required("template['name']")
        language = spec.get("language")
        if not isinstance(language, dict) or not language.get("code"):
            raise _required("template['language']['code']")
        name, code = str(spec["name"]), str(language["code"])
        template = self.template(name, code)
        if template is None or template.status != "APPROVED":
            raise GraphError(404, 132001,
                             "(#132001) Template name does not exist in the translation",
                             details=f"template name ({name}) does not exist in {code}")
        given: dict[str, list[Any]] = {}
        for component in spec.get("components") or []:
            if isinstance(component, dict):
                given[str(component.get("type", "")).lower()] = list(
                    component.get("parameters") or [])
        body_params = given.get("body", [])
        if len(body_params) != template.body_variables:
            raise GraphError(
                400, 132000,
                "(#132000) Number of parameters does not match the expected number of params",
                details=f"body: number of localizable_params ({len(body_params)}) does not match"
                        f" the expected number of params ({template.body_variables})")
        texts = []
        for param in body_params:
            if not (isinstance(param, dict) and param.get("type") == "text"
                    and isinstance(param.get("text"), str)):
                raise GraphError(
                    400, 132012,
                    "(#132012) Parameter format does not match format in the created template",
                    details="body: parameters must be {\"type\": \"text\", \"text\": \"...\"}")
            texts.append(param["text"])
        header_param = None
        media = template.header_format
        if media in ("IMAGE", "VIDEO", "DOCUMENT"):
            header_params = given.get("header", [])
            if len(header_params) != 1:
                raise GraphError(
                    400, 132000,
                    "(#132000) Number of parameters does not match the expected number of params",
                    details=f"header: number of params ({len(header_params)}) does not match the"
                            " expected number of params (1)")
            header_param = header_params[0]
            kind = media.lower()
            media_ref = header_param.get(kind) if isinstance(header_param, dict) else None
            if not (isinstance(header_param, dict) and header_param.get("type") == kind
                    and isinstance(media_ref, dict) and (media_ref.get("link") or media_ref.get("id"))):
                raise GraphError(
                    400, 132012,
                    "(#132012) Parameter format does not match format in the created template",
                    details=f"header: expected a {kind} parameter with a link or an id")
        text = _VARIABLE.sub(lambda m: texts[int(m.group(1)) - 1],
                             str((template.component("BODY") or {}).get("text", "")))
        return SentMessage(
            id="wamid." + base64.b64encode(secrets.token_bytes(30)).decode(),
            phone_number_id=self.phone_number_id, to=str(body["to"]), template=name,
            language=code, body_parameters=texts, header=header_param, text=text)


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"idx:{index}".encode()).decode()


def _cursor_index(cursor: str | None, offset: int) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor or "").decode().split(":", 1)[1]) + offset
    except (ValueError, IndexError):
        return 0
