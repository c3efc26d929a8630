"""customer.upserted and customer.consent_changed keep stormd's picture of a customer."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

import stormd.handlers.shop.customers  # noqa: F401  (registers the STATE handlers)
from stormd.schema import Customer, Store


async def _customer(sessionmaker, customer_id="c1", store="store_1") -> Customer | None:
    async with sessionmaker() as s:
        return await s.get(Customer, (store, customer_id))


async def test_new_customer_is_stored_with_profile_and_consent(handle_event, sessionmaker):
    await handle_event("customer.upserted", {
        "customerId": "c1", "email": "rahim@example.com", "phone": "+8801711000001",
        "name": "Rahim", "locale": "en", "birthday": "1990-04-14",
        "consent": {"email": True, "sms": False, "whatsapp": True, "push": False},
        "pushTokens": ["tok1"],
    })
    c = await _customer(sessionmaker)
    assert (c.email, c.phone, c.name, c.locale) == (
        "rahim@example.com", "+8801711000001", "Rahim", "en")
    assert c.birthday == date(1990, 4, 14)
    assert (c.consent_email, c.consent_sms, c.consent_whatsapp, c.consent_push) == (
        True, False, True, False)
    assert c.push_tokens == ["tok1"]
    async with sessionmaker() as s:
        assert await s.get(Store, "store_1") is not None


async def test_upsert_of_existing_customer_changes_only_given_fields(handle_event, sessionmaker):
    await handle_event("customer.upserted", {
        "customerId": "c1", "email": "a@example.com", "phone": "+8801711000001",
        "name": "Rahim", "locale": "bn", "consent": {"sms": False},
    })
    await handle_event("customer.upserted", {"customerId": "c1", "name": "Rahim Uddin"})
    c = await _customer(sessionmaker)
    assert c.name == "Rahim Uddin"
    assert (c.email, c.phone, c.locale, c.consent_sms) == (
        "a@example.com", "+8801711000001", "bn", False)


async def test_customer_without_consent_is_opted_in_by_default(handle_event, sessionmaker):
    await handle_event("customer.upserted", {"customerId": "c1", "phone": "+8801711000001"})
    c = await _customer(sessionmaker)
    assert (c.consent_email, c.consent_sms, c.consent_whatsapp, c.consent_push) == (
        True, True, True, True)
    assert c.locale == "bn"


async def test_consent_change_of_one_channel_and_of_all(handle_event, sessionmaker, clock):
    await handle_event("customer.upserted", {"customerId": "c1", "email": "a@example.com"})
    await handle_event("customer.consent_changed",
                       {"customerId": "c1", "channel": "sms", "optedIn": False})
    c = await _customer(sessionmaker)
    assert (c.consent_email, c.consent_sms, c.consent_whatsapp) == (True, False, True)
    await handle_event("customer.consent_changed",
                       {"customerId": "c1", "channel": "all", "optedIn": False},
                       at=clock.now() + timedelta(minutes=1))
    c = await _customer(sessionmaker)
    assert not any((c.consent_email, c.consent_sms, c.consent_whatsapp, c.consent_push))
    assert c.email == "a@example.com"


async def test_opt_out_of_unknown_customer_is_remembered(handle_event, sessionmaker):
    await handle_event("customer.consent_changed",
                       {"customerId": "ghost", "channel": "whatsapp", "optedIn": False})
    await handle_event("customer.upserted", {"customerId": "ghost", "name": "Later"})
    c = await _customer(sessionmaker, "ghost")
    assert c.consent_whatsapp is False and c.name == "Later"


async def test_stores_do_not_see_each_others_customers(handle_event, sessionmaker):
    await handle_event("customer.upserted", {"customerId": "c1", "name": "A"}, store="store_1")
    await handle_event("customer.upserted", {"customerId": "c1", "name": "B"}, store="store_2")
    async with sessionmaker() as s:
        names = dict((await s.execute(select(Customer.store_id, Customer.name))).all())
    assert names == {"store_1": "A", "store_2": "B"}
