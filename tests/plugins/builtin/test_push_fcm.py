"""FCM HTTP v1 with a service account: the OAuth 2 JWT-bearer grant against a local token
endpoint, FCM's documented error answers, and unregistered tokens leaving the customer."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qsl

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from stormd.config.errors import ConfigError
from stormd.daemon.cli.main import main
from stormd.plugins.builtin.google_oauth import AccessTokens, ServiceAccount
from stormd.plugins.delivery.manager import load_plugins
from stormd.schema.shop.customers import Customer

TOKEN_ANSWER = {"access_token": "ya29.c.fresh", "expires_in": 3599, "token_type": "Bearer"}


def fcm_error(status: int, state: str, code: str | None = None) -> dict:
    """An FCM v1 error body as the API documents it (google.rpc.Status + FcmError)."""
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": code}] if code else []
    return {"error": {"code": status, "message": state.lower(), "status": state,
                      "details": details}}


FCM_ANSWERS = [  # token, status, body, headers, outcome
    ("tok-ok", 200, {"name": "projects/stormcom-app/messages/0:1500415314455276%31bd1c96"},
     {}, "sent"),
    ("tok-gone", 404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), {}, "failed"),
    ("tok-quota", 429, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
     {"Retry-After": "90"}, "queued"),
    ("tok-later", 503, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE"), {}, "queued"),
]


@pytest.fixture
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_file(path, key, token_uri: str):
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "stormcom-app", "private_key_id": "k-1",
        "private_key": pem, "client_email": "stormd@stormcom-app.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri}))
    return path


async def test_fcm_takes_a_token_with_a_signed_assertion_and_handles_its_errors(
        settings_factory, fake_provider, queue, messages, pipelines, sessionmaker, clock,
        tmp_path, rsa_key):
    google = await fake_provider()  # serves both the token endpoint and FCM
    google.reply_when("assertion=", 200, TOKEN_ANSWER)
    for token, status, body, headers, _ in FCM_ANSWERS:
        google.reply_when(f'"{token}"', status, body, headers)
    account = service_account_file(tmp_path / "sa.json", rsa_key, f"{google.url}/token")
    settings = settings_factory(
        channels={"push": "fcm"}, delivery={"breaker_failures": 10},
        providers={"fcm": {"credentials_file": str(account), "base_url": google.url}})
    async with sessionmaker() as session, session.begin():
        session.add(Customer(store_id="store_1", customer_id="c1",
                             push_tokens=["tok-ok", "tok-gone", "tok-quota"]))
    for token, *_ in FCM_ANSWERS:
        await queue(channel="push", customer_id="c1", to_address=token, subject="Cart",
                    body="Still there?", marketing=False)
    await pipelines(settings).run_once()

    grants = [r for r in google.requests if r[0] == "/token"]
    assert len(grants) == 1  # four concurrent sends share one token
    form = dict(parse_qsl(grants[0][2].decode()))
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(form["assertion"], rsa_key.public_key(), algorithms=["RS256"],
                        audience=f"{google.url}/token")
    assert claims["iss"] == "stormd@stormcom-app.iam.gserviceaccount.com"
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    assert jwt.get_unverified_header(form["assertion"])["kid"] == "k-1"
    with pytest.raises(jwt.InvalidSignatureError):  # signed by this key, no other
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwt.decode(form["assertion"], other.public_key(), algorithms=["RS256"],
                   audience=f"{google.url}/token")

    sends = [r for r in google.requests if r[0] != "/token"]
    assert {path for path, *_ in sends} == {"/v1/projects/stormcom-app/messages:send"}
    assert {h["Authorization"] for _, h, _ in sends} == {"Bearer ya29.c.fresh"}
    found = await messages()
    assert [m.status for m in found] == [o for *_, o in FCM_ANSWERS]
    assert "UNREGISTERED" in found[1].error
    assert found[2].not_before >= clock.now() + timedelta(seconds=90)
    async with sessionmaker() as session:
        tokens = await session.scalar(select(Customer.push_tokens))
    assert tokens == ["tok-ok", "tok-quota"]  # the unregistered token is gone

    await pipelines(settings).run_once()  # nothing due: no new grant either
    assert len([r for r in google.requests if r[0] == "/token"]) == 1


async def test_the_token_is_refreshed_before_it_expires_and_after_a_refusal(
        fake_provider, tmp_path, rsa_key):
    import aiohttp

    google = await fake_provider()
    google.reply(200, {**TOKEN_ANSWER, "expires_in": 3600})
    account = ServiceAccount.from_file(
        service_account_file(tmp_path / "sa.json", rsa_key, f"{google.url}/token"))
    now = [1_000_000.0]
    tokens = AccessTokens(account, "scope", "fcm", clock=lambda: now[0])
    async with aiohttp.ClientSession() as http:
        assert await tokens.get(http) == "ya29.c.fresh"
        now[0] += 3000  # 10 minutes left: still used
        await tokens.get(http)
        assert len(google.requests) == 1
        now[0] += 400  # under 5 minutes left: replaced
        await tokens.get(http)
        assert len(google.requests) == 2
        tokens.forget("ya29.c.fresh")  # FCM answered 401
        await tokens.get(http)
        assert len(google.requests) == 3


def test_a_bad_service_account_file_is_refused_naming_the_key(settings_factory, tmp_path):
    bad = tmp_path / "sa.json"
    bad.write_text(json.dumps({"type": "service_account", "client_email": "x@y"}))
    for path, reason in ((tmp_path / "missing.json", "cannot read"), (bad, "lacks")):
        with pytest.raises(ConfigError) as err:
            load_plugins(settings_factory(channels={"push": "fcm"}, providers={
                "fcm": {"credentials_file": str(path)}}))
        assert str(err.value).startswith("providers.fcm") and reason in str(err.value)


def test_config_check_masks_the_credentials_file(tmp_path, rsa_key):
    account = service_account_file(tmp_path / "secret-sa.json", rsa_key, "https://x/token")
    config = tmp_path / "stormd.toml"
    config.write_text(f'[channels]\npush = "fcm"\n[providers.fcm]\n'
                      f'credentials_file = "{account}"\n')
    result = CliRunner().invoke(main, ["config", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "secret-sa.json" not in result.output and "********" in result.output
