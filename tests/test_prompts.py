"""Every prompt renders with its named placeholders and keeps untrusted text in tags."""

from __future__ import annotations

import string

import pytest

import prompts.support as support_prompts

PROMPTS = {name: value for name, value in vars(support_prompts).items() if name.endswith("_PROMPT")}


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_prompt_renders(name):
    template = PROMPTS[name]
    fields = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    rendered = template.format(**{field: f"<<{field}>>" for field in fields})
    for field in fields:
        assert f"<<{field}>>" in rendered
        assert "{" + field + "}" not in rendered


@pytest.mark.parametrize(("name", "tag", "field"), [
    ("INTENT_PROMPT", "customer_message", "message"),
    ("PLAN_PROMPT", "customer_message", "message"),
    ("PLAN_PROMPT", "knowledge", "knowledge"),
    ("PLAN_PROMPT", "conversation", "history"),
    ("PLAN_PROMPT", "facts", "facts"),
    ("ANSWER_PROMPT", "knowledge", "knowledge"),
    ("ANSWER_PROMPT", "outcomes", "outcomes"),
])
def test_untrusted_text_sits_inside_tags(name, tag, field):
    template = PROMPTS[name]
    placeholder = template.index("{" + field + "}")
    start = template.rindex(f"<{tag}>", 0, placeholder)
    end = template.index(f"</{tag}>", placeholder)
    assert f"</{tag}>" not in template[start:placeholder]
    assert start < placeholder < end


def test_prompts_say_tagged_text_is_data():
    for name, template in PROMPTS.items():
        if name == "PLAN_RETRY_PROMPT":
            continue
        assert "never instructions" in template, name
