from __future__ import annotations

import pytest

from chipnet_zoo import Budget
from chipnet_zoo.errors import BudgetError


@pytest.mark.parametrize("text,kind,value", [
    ("flops:0.1", "flops", 0.1), ("params:1", "params", 1.0), ("channels:0.0625", "channels", 0.0625),
    ("volume: 0.5", "volume", 0.5), ("FLOPS:0.25", "flops", 0.25), ("parameter_ratio:0.3", "params", 0.3),
])
def test_parse(text, kind, value):
    b = Budget.parse(text)
    assert (b.kind, b.value) == (kind, value)
    assert Budget.parse(str(b)) == b


@pytest.mark.parametrize("text", ["flops", "flops:", "flops:abc", "speed:0.5", "flops:0", "flops:-0.1",
                                  "flops:1.5", "flops:nan", "flops:0.1:2", "", "flops:inf"])
def test_bad_strings(text):
    with pytest.raises(BudgetError):
        Budget.parse(text)


def test_parse_is_the_one_parser_of_cli_and_config_budgets():
    b = Budget("flops", 0.25)
    assert Budget.parse(b) is b  # parsed once: a Budget passes through unchanged
    assert Budget.parse(0.125, default_kind="params") == Budget("params", 0.125)  # a config's bare number
    assert Budget.parse("0.5", default_kind="flops") == Budget("flops", 0.5)
    assert Budget.parse("volume:0.5", default_kind="flops") == Budget("volume", 0.5)  # an explicit kind wins
    for bad in (True, "abc", 0, 1.5):
        with pytest.raises(BudgetError):
            Budget.parse(bad, default_kind="flops")


def test_errors_are_value_errors_with_clear_messages():
    with pytest.raises(ValueError, match="unknown budget kind 'speed'"):
        Budget("speed", 0.5)
    with pytest.raises(ValueError, match="0 < value <= 1"):
        Budget("flops", 2)
    with pytest.raises(ValueError, match="kind:value"):
        Budget.parse(0.5)  # type: ignore[arg-type]


def test_slug_and_str():
    assert Budget("flops", 0.1).slug == "flops-0.1"
    assert str(Budget("params", 0.0625)) == "params:0.0625"
