"""Segment counting against the published rules (Twilio's segment-calculator vectors)."""

import json

import pytest
from click.testing import CliRunner

from stormd.daemon.cli.main import main
from stormd.plugins import sms_info, sms_segments, trim_to_fit

BENGALI = "আপনার কার্টে পণ্য অপেক্ষা করছে"


@pytest.mark.parametrize("text, encoding, count", [
    ("Hello world", "GSM-7", 1),
    ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà", "GSM-7", 1),
    ("a" * 160, "GSM-7", 1),
    ("a" * 161, "GSM-7", 2),
    ("a" * 306, "GSM-7", 2),
    ("a" * 307, "GSM-7", 3),
    ("€" * 80, "GSM-7", 1),       # extension characters count 2: 160 septets
    ("€" * 81, "GSM-7", 2),
    ("a" * 159 + "€", "GSM-7", 2),  # 161 septets
    ("a" * 152 + "{" + "a" * 7, "GSM-7", 2),  # the escape pair moves whole to part 2
    ("ক" * 70, "UCS-2", 1),
    ("ক" * 71, "UCS-2", 2),
    ("ক" * 134, "UCS-2", 2),
    ("ক" * 135, "UCS-2", 3),
    ("a" * 69 + "ç", "UCS-2", 1),    # one non-GSM character makes it all UCS-2
    ("a" * 70 + "ç", "UCS-2", 2),
    ("😀" * 35, "UCS-2", 1),         # an emoji is 2 UTF-16 code units
    ("😀" * 36, "UCS-2", 2),
    ("🇧🇩" * 17 + "ab", "UCS-2", 1),  # a flag is 4
    ("a" * 66 + "😀" + "a" * 10, "UCS-2", 2),  # the surrogate pair does not split
])
def test_segments_are_counted_as_gateways_bill(text, encoding, count):
    info = sms_info(text)
    assert (info.encoding, info.segments) == (encoding, count)


def test_escape_pair_at_the_part_boundary_starts_the_next_part():
    # 152 septets then an escape pair: part 1 holds 152, the pair cannot split.
    text = "a" * 152 + "[" + "a" * 152
    assert sms_info(text).units == 306
    assert sms_segments(text) == 3  # 306 plain septets would be 2


def test_bengali_message_is_ucs2_and_counts_characters():
    info = sms_info(BENGALI)
    assert info.as_dict() == {"encoding": "UCS-2", "characters": len(BENGALI),
                              "segments": 1}


def test_sms_info_command_prints_the_contract_json():
    result = CliRunner().invoke(main, ["sms-info", "a" * 161])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"encoding": "GSM-7", "characters": 161,
                                         "segments": 2}
    result = CliRunner().invoke(main, ["sms-info", "ক" * 71])
    assert json.loads(result.output)["segments"] == 2


def test_trimming_keeps_a_bengali_reminder_in_one_segment_with_its_link_whole():
    link = " https://s.stormcom.app/c/AB12"
    name = "স্যামসাং গ্যালাক্সি এ৫৫ ফাইভজি স্মার্টফোন ও চার্জার সহ পুরো সেট এখনো আপনার কার্টে"
    assert sms_segments(name + link) > 1
    trimmed = trim_to_fit(name, link)
    assert sms_segments(trimmed) == 1
    assert trimmed.endswith("…" + link)
    kept = trimmed[: -len("…" + link)]
    assert name.startswith(kept)
    assert not kept.endswith("\u09cd")  # no dangling virama


def test_trimming_leaves_a_short_message_alone_and_refuses_an_oversized_tail():
    assert trim_to_fit("Hi", " there") == "Hi there"
    with pytest.raises(ValueError):
        trim_to_fit("x", "ক" * 80)
