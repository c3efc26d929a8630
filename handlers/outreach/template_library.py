"""CampaignTemplate rows: the system library (store_id NULL, is_system) mirrored from the
files under handlers/outreach/library/, and each store's own templates.

A store's template of a slug overrides the system one of the same slug (a merchant's own
Eid wording); `handlers.outreach.queue.load_templates` reads it that way. Bodies are checked in
the sandbox when saved, so a broken template is refused then, not at send time.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.channels import CHANNELS
from stormd.handlers.outreach.templates import (
    LOCALES,
    OPTIONS,
    TemplateError,
    compile_source,
    sms_segment_limit,
    system_library,
)
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


def check_content(slug: str, content: Any) -> dict[str, Any]:
    """{channel: {locale: body}} plus OPTIONS (`sms_max_segments`), each body compiled in
    the sandbox: a store's template or a campaign's inline content, refused by key."""
    if not isinstance(content, dict) or not content:
        raise TemplateError("content: give {channel: {locale: body}}")
    if not set(content) - set(OPTIONS):
        raise TemplateError("content: give {channel: {locale: body}}, not only options")
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
            compile_source(source, channel, f"{slug}/{channel}.{locale}")
    return content


async def save_store_template(session: AsyncSession, store_id: str, data: dict[str, Any],
                              now: datetime) -> CampaignTemplate:
    """Create or replace one of the store's templates: {slug, name, content, category?,
    description?, recommendedDiscount?, channelMix?}."""
    slug = data.get("slug")
    if not isinstance(slug, str) or not SLUG.match(slug):
        raise TemplateError("slug: lowercase letters, digits, '_' or '-' (up to 120)")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TemplateError("name: required")
    category = str(data.get("category", "PROMOTIONAL")).upper()
    if category not in CATEGORIES:
        raise TemplateError(f"category: one of {', '.join(CATEGORIES)}")
    content = check_content(slug, data.get("content"))
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
