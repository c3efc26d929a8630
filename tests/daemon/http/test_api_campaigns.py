"""Campaigns, templates and automations over the HTTP API on a running daemon: the whole
campaign lifecycle as `stormd campaigns` does it, ETag conflicts, idempotent schedule and
send, template previews in both languages with SMS segment counts, automation settings
and log."""

from __future__ import annotations

from api_helpers import problem_of
from campaign_data import STORE, add_customers, add_segment, add_store, customer_row

BASE = f"/api/v1/stores/{STORE}"
SPEC = {"name": "Independence Day", "channels": ["whatsapp", "sms"], "segments": ["vip"],
        "template": "independence_day", "discountPercent": 26}


async def _shop(api):
    async with api.daemon.sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(f"c{i}") for i in range(3)])
        await add_segment(s, "vip", ["c0", "c1", "c2"])
        await s.commit()
    return await api.store_client(STORE)


async def test_campaign_lifecycle_over_http(api):
    a = await api()
    client = await _shop(a)
    created = await client.post(f"{BASE}/campaigns", json=SPEC)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    assert created.json()["status"] == "DRAFT" and created.headers["etag"]
    missing = await client.post(f"{BASE}/campaigns", json={
        "name": "x", "channels": ["sms"], "content": {"sms": {"en": "{{ gift }}"}}})
    assert "gift" in problem_of(missing, 422)["detail"]

    preview = (await client.post(f"{BASE}/campaigns/{cid}/preview",
                                 json={"testData": {"name": "Karim"}})).json()
    assert preview["preview"]["byChannel"] == {"whatsapp": 3}  # first channel of the mix
    assert any("Independence Day: 26% off" in r["body"] for r in preview["rendered"])

    etag = (await client.get(f"{BASE}/campaigns/{cid}")).headers["etag"]
    problem_of(await client.patch(f"{BASE}/campaigns/{cid}", json={"name": "Bijoy"}), 428)
    renamed = await client.patch(f"{BASE}/campaigns/{cid}", json={"name": "Bijoy"},
                                 headers={"If-Match": etag})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Bijoy"
    # a second editor with the old ETag cannot overwrite the first one's change
    lost = await client.patch(f"{BASE}/campaigns/{cid}", json={"holdoutPercent": 5},
                              headers={"If-Match": etag})
    problem_of(lost, 412)
    assert (await client.get(f"{BASE}/campaigns/{cid}")).json()["holdoutPercent"] == 0

    once = {"Idempotency-Key": "sched-1"}
    scheduled = await client.post(f"{BASE}/campaigns/{cid}/schedule",
                                  json={"sendMode": "now"}, headers=once)
    assert scheduled.status_code == 200, scheduled.text
    assert scheduled.json()["campaign"]["status"] == "SCHEDULED"
    replay = await client.post(f"{BASE}/campaigns/{cid}/schedule", json={"sendMode": "now"},
                               headers=once)
    assert replay.json() == scheduled.json() and replay.headers["idempotent-replayed"] == "true"
    other = await client.post(f"{BASE}/campaigns/{cid}/schedule", json={"sendMode": "off_peak"},
                              headers=once)
    assert "different request" in problem_of(other, 422)["detail"]

    paused = await client.post(f"{BASE}/campaigns/{cid}/pause")
    assert paused.json()["status"] == "PAUSED"
    listed = (await client.get(f"{BASE}/campaigns", params={"status": "PAUSED"})).json()
    assert [c["id"] for c in listed["items"]] == [cid]
    cancelled = await client.post(f"{BASE}/campaigns/{cid}/cancel")
    assert cancelled.json()["campaign"]["status"] == "CANCELLED"
    problem_of(await client.post(f"{BASE}/campaigns/{cid}/cancel"), 409)
    other_store = await (await a.store_client("s2")).get(f"/api/v1/stores/{STORE}/campaigns/{cid}")
    problem_of(other_store, 404)


async def test_send_once_and_read_the_results(api):
    a = await api()
    client = await _shop(a)
    cid = (await client.post(f"{BASE}/campaigns", json={**SPEC, "channels": ["sms"]})).json()["id"]
    assert (await client.post(f"{BASE}/campaigns/{cid}/schedule",
                              json={"sendMode": "now"})).status_code == 200
    once = {"Idempotency-Key": "send-1"}
    sent = await client.post(f"{BASE}/campaigns/{cid}/send", headers=once)
    assert sent.status_code == 200, sent.text
    assert sent.json()["campaign"]["status"] == "SENT" and sent.json()["result"]["queued"] == 3
    again = await client.post(f"{BASE}/campaigns/{cid}/send", headers=once)
    assert again.json() == sent.json()  # replayed, not a second fan-out
    problem_of(await client.post(f"{BASE}/campaigns/{cid}/send"), 409)  # without a key: SENT
    messages = (await client.get(f"{BASE}/messages", params={"campaignId": cid})).json()
    assert len(messages["items"]) == 3
    results = (await client.get(f"{BASE}/campaigns/{cid}/results")).json()["results"]
    assert results["orders"] == 0 and results["cost"] == sent.json()["campaign"]["cost"]
    audit = (await client.get(f"{BASE}/audit")).json()["items"]
    assert [e["action"] for e in audit] == ["campaigns.send", "campaigns.schedule",
                                            "campaigns.create", "keys.create"]
    assert all(e["keyId"] and e["actor"].startswith("key:") for e in audit[:3])
    assert audit[3]["actor"].startswith("cli:")  # the key was made at the command line
    assert audit[0]["target"] == cid and audit[0]["at"]


async def test_templates_library_save_and_preview_in_both_languages(api):
    a = await api()
    client = await _shop(a)
    library = (await client.get(f"{BASE}/templates", params={"limit": 200})).json()["items"]
    assert len(library) >= 18 and all(t["system"] for t in library)
    bad = await client.put(f"{BASE}/templates/bad", json={
        "name": "Bad", "content": {"sms": {"en": "{{ x.__class__ }}"}}})
    assert "__class__" in problem_of(bad, 422)["detail"]  # refused when saved
    mine = {"name": "Our Eid", "category": "SEASONAL", "content": {"sms": {
        "en": "Eid offer for {{ first_name }}: {{ discount_code }}",
        "bn": "{{ first_name }}, ঈদের অফার: {{ discount_code }} — আজই কিনুন, সীমিত সময়ের "
              "জন্য, ঢাকার সব এলাকায় ফ্রি ডেলিভারি"}}}
    saved = await client.put(f"{BASE}/templates/eid_ul_fitr", json=mine)
    assert saved.status_code == 201 and saved.json()["system"] is False
    problem_of(await client.put(f"{BASE}/templates/eid_ul_fitr", json=mine), 428)
    replaced = await client.put(f"{BASE}/templates/eid_ul_fitr", json=mine,
                                headers={"If-Match": saved.headers["etag"]})
    assert replaced.status_code == 200
    preview = (await client.post(f"{BASE}/templates/eid_ul_fitr/preview",
                                 json={"testData": {"name": "Karim Mia"}})).json()["rendered"]
    by_locale = {r["locale"]: r for r in preview}
    assert by_locale["en"]["body"].startswith("Eid offer for Karim: SAVE10-")
    assert by_locale["en"]["sms"] == {"encoding": "GSM-7", "segments": 1,
                                      "characters": len(by_locale["en"]["body"])}
    bn = by_locale["bn"]  # Bengali is UCS-2: 70 characters in one part, then 67 a part
    assert bn["sms"]["encoding"] == "UCS-2" and 70 < bn["sms"]["characters"] <= 134
    assert bn["sms"]["segments"] == 2
    await client.put(f"{BASE}/templates/gift", json={
        "name": "Gift", "content": {"email": {"en": "Subject: Hi\n{{ gift }}"}}})
    [gift] = (await client.post(f"{BASE}/templates/gift/preview", json={})).json()["rendered"][:1]
    assert "gift" in gift["error"]  # a missing variable is said inline, by name
    problem_of(await client.delete(f"{BASE}/templates/eid_ul_fitr"), 428)
    problem_of(await client.delete(f"{BASE}/templates/win_back", headers={"If-Match": "*"}), 409)
    gone = await client.delete(f"{BASE}/templates/eid_ul_fitr", headers={"If-Match": "*"})
    assert gone.status_code == 204
    assert (await client.get(f"{BASE}/templates/eid_ul_fitr")).json()["system"] is True


async def test_automations_are_configured_and_logged(api):
    a = await api()
    client = await _shop(a)
    listed = (await client.get(f"{BASE}/automations")).json()["items"]
    assert {w["trigger"] for w in listed} >= {"win_back", "vip", "welcome", "birthday"}
    got = await client.get(f"{BASE}/automations/win_back")
    off = await client.put(f"{BASE}/automations/win_back", json={"enabled": False},
                           headers={"If-Match": got.headers["etag"]})
    assert off.status_code == 200 and off.json()["enabled"] is False
    problem_of(await client.put(f"{BASE}/automations/win_back", json={"enabled": True}), 428)
    entry = await client.put(f"{BASE}/automations/segment_entry:vip", json={
        "enabled": True, "config": {"template": "nope"}})
    assert "no template 'nope'" in problem_of(entry, 422)["detail"]
    made = await client.put(f"{BASE}/automations/segment_entry:vip", json={
        "enabled": True, "config": {"template": "vip_reward"}})
    assert made.status_code == 200
    log = await client.get(f"{BASE}/automations/log", params={"status": "COMPLETED",
                                                                 "trigger": "vip"})
    assert log.status_code == 200 and log.json() == {"items": [], "nextCursor": None}
    problem_of(await client.get(f"{BASE}/automations/log", params={"status": "DONE"}), 422)
    results = (await client.get(f"{BASE}/automations/vip/results")).json()
    assert results["trigger"] == "vip" and results["orders"] == 0
