"""Keys that identify a message or an execution stay within their column and distinct."""

from stormd.handlers.outreach.queue import KEY_LENGTH, bounded_key


def test_long_keys_are_shortened_without_colliding():
    short = "s1:campaign:cmp_1:c1"
    assert bounded_key(short) == short
    a = bounded_key("s" * 64 + ":campaign:cmp_1:" + "c" * 127 + "a")
    b = bounded_key("s" * 64 + ":campaign:cmp_1:" + "c" * 127 + "b")
    assert len(a) <= KEY_LENGTH and len(b) <= KEY_LENGTH and a != b
    assert bounded_key("x" * 300) == bounded_key("x" * 300)
