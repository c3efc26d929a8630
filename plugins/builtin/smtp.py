"""`smtp`: e-mail through any SMTP server (smtplib in a worker thread).

The Message-ID is derived from the idempotency key, so a resend after a crash carries the
same id and mail systems that de-duplicate by it show one message.

    [providers.smtp]
    host = "smtp.example.com"
    port = 587
    starttls = true
    username = "shop"
    password = "env:SMTP_PASSWORD"
    from_address = "Shop <shop@example.com>"
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from pydantic import SecretStr

from stormd.plugins import PermanentError, RetryableError, hookimpl
from stormd.plugins.builtin.transport import ProviderConfig, declare, short_id

NAME = "smtp"


class Config(ProviderConfig):
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str = ""
    password: SecretStr = SecretStr("")
    from_address: str
    timeout: float = 30.0


stormd_provider, stormd_validate_config = declare(NAME, ("email",), Config, "any SMTP server")


def build_email(message, config: Config) -> EmailMessage:
    email = EmailMessage()
    email["From"] = config.from_address
    email["To"] = message.to
    email["Subject"] = message.subject or ""
    email["Date"] = formatdate(localtime=False)
    domain = config.from_address.rpartition("@")[2].strip("> ") or "stormd.local"
    email["Message-ID"] = make_msgid(idstring=short_id(message.idempotency_key, 32),
                                     domain=domain)
    for name, value in message.headers.items():
        email[name] = value
    email.set_content(message.body)
    if message.html:
        email.add_alternative(message.html, subtype="html")
    return email


def _deliver(email: EmailMessage, config: Config) -> None:
    cls = smtplib.SMTP_SSL if config.ssl else smtplib.SMTP
    with cls(config.host, config.port, timeout=config.timeout) as client:
        if config.starttls:
            client.starttls()
        if config.username:
            client.login(config.username, config.password.get_secret_value())
        client.send_message(email)


@hookimpl
async def stormd_send(message, config: Config) -> str:
    email = build_email(message, config)
    try:
        await asyncio.to_thread(_deliver, email, config)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(400 <= code < 500 for code in codes):  # greylisting, a full mailbox
            raise RetryableError(f"{NAME}: recipient deferred: {exc.recipients}",
                                 code=str(codes[0])) from exc
        raise PermanentError(f"{NAME}: recipient refused: {exc.recipients}",
                             code="recipient") from exc
    except smtplib.SMTPAuthenticationError as exc:
        raise RetryableError(f"{NAME}: authentication failed ({exc.smtp_code})",
                             code="auth") from exc
    except smtplib.SMTPResponseException as exc:
        text = f"{NAME}: {exc.smtp_code} {exc.smtp_error!r}"
        if 400 <= exc.smtp_code < 500:
            raise RetryableError(text, code=str(exc.smtp_code)) from exc
        raise PermanentError(text, code=str(exc.smtp_code)) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise RetryableError(f"{NAME}: {type(exc).__name__}: {exc}", code="network") from exc
    return email["Message-ID"]
