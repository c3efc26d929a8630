"""`stormd sms-info TEXT`: encoding, characters and billed segments."""

from __future__ import annotations

import click

from stormd.daemon.cli.common import echo_json
from stormd.plugins import sms_info


@click.command("sms-info")
@click.argument("text")
def command(text: str) -> None:
    """How the SMS gateways bill TEXT: GSM-7 (160, then 153 a part) or UCS-2 (70, then 67)."""
    echo_json(sms_info(text).as_dict())
