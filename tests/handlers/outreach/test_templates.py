"""The template sandbox, variable schema and the system library (no database needed)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from stormd.handlers.outreach.templates import (
    CompiledTemplate,
    MissingVariables,
    TemplateError,
    TemplateLimitExceeded,
    check_variables,
    render_template,
    required_variables,
    system_library,
)

BASE = {"name": "Rahim", "store_name": "Dokan", "shop_url": "https://dokan.example",
        "discount_code": "WB-7Q2X", "discount_percent": 15}


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ items.append(1) }}",
    "{{ items.__len__() }}",
    "{{ ''.format.__globals__ }}",
])
def test_sandbox_refuses_escapes_to_internals(source):
    with pytest.raises(TemplateError, match="refused by the sandbox|unsafe|not allowed"):
        CompiledTemplate(source).render({"items": [1]})


def test_internals_are_refused_when_the_template_is_compiled():
    with pytest.raises(TemplateError, match="line 2: access to '__globals__'"):
        CompiledTemplate("ok\n{{ lipsum.__globals__ }}")
    with pytest.raises(TemplateError, match="'_secret'"):
        CompiledTemplate("{{ x['_secret'] }}")


def test_sandbox_refuses_a_template_that_never_finishes():
    loop = "{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateLimitExceeded, match="time limit"):
        CompiledTemplate(loop).render({})


def test_time_off_the_cpu_does_not_count_against_a_render():
    """A loaded machine that deschedules the daemon mid-render (here: a wait inside a
    helper) is not the template's fault; only the render's own CPU time is limited."""
    def pause() -> str:
        time.sleep(0.7)
        return "ok"

    assert CompiledTemplate("{{ pause() }} {{ who.name }}").render(
        {"pause": pause, "who": {"name": "Rahim"}}).body == "ok Rahim"


@pytest.mark.parametrize("source", [
    "{{ 'x' * 100000000 }}",
    "{{ 'a'|center(100000000) }}",
    "{% for i in range(5000) %}{{ 'word ' * 20 }}{% endfor %}",
    "{{ range(10000000)|list }}",
])
def test_sandbox_caps_output_size(source):
    with pytest.raises(TemplateError):
        CompiledTemplate(source).render({})


def test_html_body_escapes_customer_data_but_text_body_keeps_it():
    t = CompiledTemplate("Subject: Hi\nHello {{ name }}", "t", layout=True)
    out = t.render({"name": "<script>alert(1)</script>"})
    assert out.subject == "Hi"
    assert "<script>" in out.body  # plain text is not HTML
    assert "<script>" not in out.html and "&lt;script&gt;" in out.html


def test_merchant_html_is_autoescaped():
    t = CompiledTemplate("Hi {{ name }}", "t", html_source="<p>Hi {{ name }}</p>")
    assert t.render({"name": "<b>x</b>"}).html == "<p>Hi &lt;b&gt;x&lt;/b&gt;</p>"


def test_missing_placeholder_is_refused_before_sending_with_its_name():
    source = "Hi {{ name }}, use {{ discount_code }} at {{ shop_url }}"
    assert required_variables(source) == {"name", "discount_code", "shop_url"}
    with pytest.raises(MissingVariables) as err:
        check_variables(source, {"name", "shop_url"}, where="win_back/sms.en")
    assert err.value.names == ["discount_code"]
    assert "discount_code" in str(err.value) and "win_back/sms.en" in str(err.value)


def test_variables_defined_inside_the_template_are_not_required():
    source = "{% set greeting = 'Hi' %}{% for p in products %}{{ greeting }} {{ p.name }}{% endfor %}"
    assert required_variables(source) == {"products"}


def test_syntax_error_names_the_line():
    with pytest.raises(TemplateError, match="line 2"):
        required_variables("ok\n{{ broken ")


def test_locale_picks_bengali_or_english_and_falls_back_to_english():
    vars_ = {**BASE}
    assert "ফিরে আসুন" in render_template("win_back", "sms", "bn", vars_).body
    assert "We miss you" in render_template("win_back", "sms", "en", vars_).body
    assert "We miss you" in render_template("win_back", "sms", "fr", vars_).body


def test_email_renders_subject_text_and_html():
    out = render_template("win_back", "email", "en", BASE)
    assert out.subject == "We miss you at Dokan: 15% off"
    assert "WB-7Q2X" in out.body and "WB-7Q2X" in out.html
    assert not out.body.startswith("Subject:")


SEASONAL = {
    "eid_ul_fitr": ("30-50%", {"sms", "whatsapp", "email"}),
    "eid_ul_adha": ("30-50%", {"sms", "whatsapp", "email"}),
    "pohela_boishakh": ("25-40%", {"email", "push"}),
    "victory_day": ("16% (symbolic)", {"sms", "email"}),
    "independence_day": ("26% (symbolic)", {"sms", "email"}),
    "ramadan_nights": ("20-35%", {"whatsapp", "email"}),
    "durga_puja": ("25-40%", {"email", "push"}),
    "friday_flash_sale": ("50-70%", {"sms"}),
}


def test_library_has_the_automation_and_bangladesh_seasonal_sets():
    lib = system_library()
    for slug in ("cart_reminder_1", "cart_reminder_2", "cart_reminder_3", "win_back",
                 "vip_reward", "welcome_1", "welcome_2", "welcome_3", "post_purchase_upsell",
                 "birthday", "anniversary", *SEASONAL):
        assert slug in lib, slug
    for slug, (discount, mix) in SEASONAL.items():
        assert lib[slug].recommended_discount == discount
        assert set(lib[slug].channel_mix) == mix
    assert lib["victory_day"].default_discount_percent == 16
    assert lib["independence_day"].default_discount_percent == 26


def test_every_library_body_renders_in_both_locales_within_its_channel_mix():
    variables = {**BASE, "products": [{"name": "Panjabi", "price": Decimal(1200)}],
                 "items": [{"name": "Saree", "quantity": 1, "unit_price": Decimal(2500),
                            "image_url": None}],
                 "total": Decimal(2500), "recovery_url": "https://r", "store_name": "Dokan",
                 "years": 2}
    for slug, template in system_library().items():
        for channel in template.channel_mix:
            for locale in ("bn", "en"):
                assert locale in template.bodies[channel], (slug, channel, locale)
                out = render_template(slug, channel, locale, variables)
                assert out.body, (slug, channel, locale)
                if channel == "email":
                    assert out.subject, (slug, locale)


def test_whatsapp_parameters_follow_the_order_of_first_use():
    t = CompiledTemplate("Hi {{ name or 'there' }}, {{ discount_percent }}% off with "
                         "{{ discount_code }}; {{ name }} at {{ shop_url }}", "wa")
    assert t.order == ("name", "discount_percent", "discount_code", "shop_url")
    params = t.params({"name": None, "discount_percent": Decimal("15.0"), "discount_code": "X1",
                       "shop_url": "https://s"})
    assert params == ["", "15", "X1", "https://s"]
