"""CampaignTemplate rows: the system library (store_id NULL, is_system) mirrored from the
files under handlers/outreach/library/, and each store's own templates.

A store's template of a slug overrides the system one of the same slug (a merchant's own
Eid wording); `handlers.outreach.queue.load_templates` reads it that way. Bodies are checked
when saved, so a broken template is refused then, not at send time:

1. each body is parsed in the sandbox (syntax, `_private` attributes, include/import,
   size, the sms_tail mark);
2. the variables it reads are checked against those its trigger supplies: a slug a
   trigger sends (welcome_1..3, win_back, vip_reward, birthday, post_purchase_upsell, the
   cart reminders of `carts.steps`, a segment-entry workflow's template) may read only
   what that trigger gives it (handlers/automations/triggers.py `template_variables`,
   handlers/carts/recovery.py `TEMPLATE_VARIABLES`); any other slug is a campaign's,
   whose variables the campaign supplies (checked when the campaign is created);
3. it is rendered against sample data in Bengali and English, in the render worker under
   the limits of a real send (time, output, memory, recursion); a body that fails is
   refused with the reason, naming the body, the line and the variable or limit.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.channels import CHANNELS
from stormd.config.settings import Settings
from stormd.handlers.automations.triggers import template_variables
from stormd.handlers.carts.recovery import TEMPLATE_VARIABLES as CART_VARIABLES
from stormd.handlers.outreach.queue import DISCOUNT_NAMES, STANDARD_NAMES
from stormd.handlers.outreach.templates import (
    LOCALES,
    OPTIONS,
    CompiledTemplate,
    MissingVariables,
    TemplateError,
    TemplateLimitExceeded,
    compile_source,
    sms_segment_limit,
    system_library,
    variable_lines,
)
from stormd.schema.marketing.automations import AutomationWorkflow
from stormd.schema.marketing.campaigns import CampaignTemplate

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,119}$")
CATEGORIES = ("SEASONAL", "PROMOTIONAL", "AUTOMATION")


async def seed_system_templates(session: AsyncSession, now: datetime) -> int:
    """Insert or refresh the system rows from the shipped files; returns rows written."""
    existing = {t.slug: t for t in (await session.scalars(
        select(CampaignTemplate).where(CampaignTemplate.store_id.is_(None),
                                       CampaignTemplate.is_system.is_(True)))).all()}
    written = 0
    for t in system_library().values():
        content = {**t.bodies, **({"sms_max_segments": t.sms_max_segments}
                                  if t.sms_max_segments else {})}
        values = {"name": t.name, "type": t.type, "category": t.category,
                  "description": t.description, "default_content": content,
                  "recommended_discount": t.recommended_discount,
                  "channel_mix": list(t.channel_mix)}
        row = existing.get(t.slug)
        if row is None:
            session.add(CampaignTemplate(store_id=None, slug=t.slug, is_system=True, usage_count=0,
                                         created_at=now, updated_at=now, **values))
            written += 1
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = now
            written += 1
    await session.flush()
    return written


def parse_content(slug: str, content: Any) -> dict[tuple[str, str], CompiledTemplate]:
    """{channel: {locale: body}} plus OPTIONS (`sms_max_segments`), each body parsed and
    checked in the sandbox (a store's template or a campaign's inline content), refused by
    key; returns the bodies by (channel, locale), an email's HTML part joined to it."""
    if not isinstance(content, dict) or not content:
        raise TemplateError("content: give {channel: {locale: body}}")
    if not set(content) - set(OPTIONS):
        raise TemplateError("content: give {channel: {locale: body}}, not only options")
    bodies: dict[tuple[str, str], CompiledTemplate] = {}
    for channel, by_locale in content.items():
        if channel in OPTIONS:
            sms_segment_limit(by_locale, f"content.{channel}")
            continue
        if channel not in (*CHANNELS, "email_html"):
            raise TemplateError(f"content.{channel}: not a channel ({', '.join(CHANNELS)})")
        if not isinstance(by_locale, dict) or not by_locale:
            raise TemplateError(f"content.{channel}: give {{locale: body}}")
        for locale, source in by_locale.items():
            if locale not in LOCALES:
                raise TemplateError(f"content.{channel}.{locale}: locale must be one of "
                                    f"{', '.join(LOCALES)}")
            if not isinstance(source, str) or not source.strip():
                raise TemplateError(f"content.{channel}.{locale}: empty body")
            if channel == "email_html":  # checked here; it renders with its email body
                compile_source(".", "email", f"{slug}/{channel}.{locale}", source)
                continue
            html = None
            if channel == "email":
                html = (content.get("email_html") or {}).get(locale)
                html = html if isinstance(html, str) and html.strip() else None
            bodies[(channel, locale)] = compile_source(source, channel,
                                                       f"{slug}/{channel}.{locale}", html)
    return bodies


def check_content(slug: str, content: Any) -> dict[str, Any]:
    """`parse_content`, returning the content (what a save or a campaign keeps)."""
    parse_content(slug, content)
    return content


def _sample(locale: str, names: frozenset[str] | set[str],
            values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample data of a customer in `locale` for the variables `names` (a name nothing
    here knows, a campaign's own, gets a short string), over which `values` are laid."""
    bn = locale == "bn"
    items = [{"name": "সুতির পাঞ্জাবি" if bn else "Cotton panjabi", "quantity": 2,
              "unit_price": Decimal("1250.00"), "line_total": Decimal("2500.00"),
              "image_url": "https://cdn.stormcom.app/sample/panjabi.jpg"},
             {"name": "জামদানি শাড়ি" if bn else "Jamdani saree", "quantity": 1,
              "unit_price": Decimal("4800.00"), "line_total": Decimal("4800.00"),
              "image_url": None}]
    known: dict[str, Any] = {
        "name": "রহিম উদ্দিন" if bn else "Rahim Uddin", "first_name": "রহিম" if bn else "Rahim",
        "customer_id": "sample-customer", "locale": locale,
        "store_name": "নমুনা দোকান" if bn else "Sample Shop", "currency": "BDT",
        "shop_url": "https://sample.stormcom.app/", "discount_code": "SAVE10-K7Q2M9",
        "discount_percent": 10, "items": items, "total": Decimal("7300.00"),
        "recovery_url": "https://sample.stormcom.app/cart/c-1?discount=SAVE10-K7Q2M9",
        "step": 1, "order_id": "ORD-1001",
        "products": [{"product_id": "p-7", "name": "সুতির ফতুয়া" if bn else "Cotton fatua",
                      "category": "Clothing", "price": Decimal("950.00"),
                      "image_url": None, "strategy": "co_purchased"}],
    }
    sample = {n: known.get(n, "sample") for n in names}
    sample.update(values or {})
    return sample


async def _supplied(session: AsyncSession, settings: Settings, store_id: str, slug: str
                    ) -> tuple[str, frozenset[str]] | None:
    """(trigger, the variables it supplies) for a slug a trigger sends; None for a
    campaign's template."""
    triggers = template_variables(settings)
    if slug in triggers:
        return triggers[slug]
    if slug in {step.template for step in settings.carts.steps}:
        return "abandoned_cart", CART_VARIABLES
    for workflow in (await session.scalars(select(AutomationWorkflow).where(
            AutomationWorkflow.store_id == store_id,
            AutomationWorkflow.trigger.like("segment_entry:%")))).all():
        config = workflow.config or {}
        if config.get("template") == slug:
            return workflow.trigger, STANDARD_NAMES | (
                DISCOUNT_NAMES if config.get("discount_percent") else frozenset())
    return None


async def check_renders(slug: str, bodies: dict[tuple[str, str], CompiledTemplate],
                        supplied: tuple[str, frozenset[str]] | None,
                        values: dict[str, Any] | None = None) -> None:
    """Refuse a body that reads what its trigger does not supply, or that fails to render
    against sample data in Bengali and English under the limits of a real send."""
    if supplied is not None:
        trigger, names = supplied
        for body in bodies.values():
            missing = body.required - names
            if missing:
                lines = variable_lines(body.source, missing)
                raise MissingVariables(missing, f"{body.name} (the {trigger} trigger "
                                       f"supplies {', '.join(sorted(names))})", lines)
    for (channel, _), body in bodies.items():
        names = supplied[1] if supplied is not None else (
            body.required | STANDARD_NAMES | DISCOUNT_NAMES)
        # A campaign's own variables get stand-in text here: an error that may come from
        # their real values (a number expected) is left to the campaign's own check; a
        # limit is the template's whatever the values.
        guessed = supplied is None and bool(body.required - STANDARD_NAMES - DISCOUNT_NAMES
                                            - set(values or {}))
        samples = [_sample(locale, names, values) for locale in LOCALES]
        for answer in await body.render_many(samples, tail=channel == "sms", counted=False):
            if isinstance(answer, TemplateError) and (
                    not guessed or isinstance(answer, TemplateLimitExceeded)):
                raise TemplateError(f"does not render with sample data: {answer}")


async def save_store_template(session: AsyncSession, store_id: str, data: dict[str, Any],
                              now: datetime, settings: Settings | None = None
                              ) -> CampaignTemplate:
    """Create or replace one of the store's templates: {slug, name, content, category?,
    description?, recommendedDiscount?, channelMix?}, after the checks above."""
    slug = data.get("slug")
    if not isinstance(slug, str) or not SLUG.match(slug):
        raise TemplateError("slug: lowercase letters, digits, '_' or '-' (up to 120)")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TemplateError("name: required")
    category = str(data.get("category", "PROMOTIONAL")).upper()
    if category not in CATEGORIES:
        raise TemplateError(f"category: one of {', '.join(CATEGORIES)}")
    content = data.get("content")
    bodies = parse_content(slug, content)
    settings = settings or Settings()
    await check_renders(slug, bodies, await _supplied(session, settings, store_id, slug))
    row = await session.scalar(select(CampaignTemplate).where(
        CampaignTemplate.store_id == store_id, CampaignTemplate.slug == slug))
    if row is None:
        row = CampaignTemplate(store_id=store_id, slug=slug, is_system=False, usage_count=0,
                               created_at=now)
        session.add(row)
    row.name, row.type, row.category = name.strip(), category, category
    row.description = data.get("description")
    row.default_content = content
    row.recommended_discount = data.get("recommendedDiscount")
    row.channel_mix = data.get("channelMix") or [c for c in content
                                                 if c not in ("email_html", *OPTIONS)]
    row.updated_at = now
    await session.flush()
    return row


async def list_templates(session: AsyncSession, store_id: str) -> list[CampaignTemplate]:
    """The system templates and the store's own (its own first where a slug is in both)."""
    rows = (await session.scalars(select(CampaignTemplate).where(or_(
        CampaignTemplate.store_id.is_(None), CampaignTemplate.store_id == store_id))
        .order_by(CampaignTemplate.slug))).all()
    own = {r.slug for r in rows if r.store_id == store_id}
    return [r for r in rows if r.store_id == store_id or r.slug not in own]


async def count_use(session: AsyncSession, store_id: str, slug: str | None, now: datetime
                    ) -> None:
    """One more campaign uses this template (the store's own, else the system one)."""
    if not slug:
        return
    result = await session.execute(update(CampaignTemplate).where(
        CampaignTemplate.store_id == store_id, CampaignTemplate.slug == slug)
        .values(usage_count=CampaignTemplate.usage_count + 1))
    if result.rowcount:
        return
    system = (CampaignTemplate.store_id.is_(None), CampaignTemplate.slug == slug)
    if not await session.scalar(select(CampaignTemplate.id).where(*system)):
        await seed_system_templates(session, now)
    await session.execute(update(CampaignTemplate).where(*system)
                          .values(usage_count=CampaignTemplate.usage_count + 1))


def template_dict(t: CampaignTemplate) -> dict[str, Any]:
    return {"slug": t.slug, "storeId": t.store_id, "system": t.is_system, "name": t.name,
            "category": t.category, "description": t.description,
            "recommendedDiscount": t.recommended_discount, "channelMix": t.channel_mix or [],
            "usageCount": t.usage_count,
            "bodies": {ch: sorted(locs) for ch, locs in sorted(t.default_content.items())
                       if ch not in OPTIONS},
            "smsMaxSegments": t.default_content.get("sms_max_segments")}
