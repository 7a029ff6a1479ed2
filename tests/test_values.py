from __future__ import annotations

import pytest

from ron_metrics.config import values as v
from ron_metrics.config.values import BindAddress, InvalidValueError


@pytest.mark.parametrize(
    ("parser", "raw", "expected"),
    [
        (v.parse_bool, True, True),
        (v.parse_bool, False, False),
        (v.parse_positive_int, 3, 3),
        (v.parse_positive_int, 1, 1),
        (v.parse_str, "x", "x"),
        (v.parse_optional_str, "", None),
        (v.parse_optional_str, "a", "a"),
        (v.parse_name_list, ["a", "b", "a"], ("a", "b")),
        (v.parse_name_list, ["x.y", "z-1"], ("x.y", "z-1")),
        (v.parse_delay, "0s", 0.0),
        (v.parse_delay, "250ms", 0.25),
        (v.parse_duration, 1.5, 1.5),
        (v.parse_duration, "2h", 7200.0),
        (v.parse_choice("a", "b"), "b", "b"),
        (v.parse_delay, 0, 0.0),
        (v.parse_delay, "0", 0.0),
        (v.parse_delay, "0ms", 0.0),
        (v.parse_delay, 1, 1.0),
        (v.parse_duration, "2", 2.0),  # unitless strings are seconds
        (v.parse_duration, "150ms", 0.15),
        (v.parse_duration, "500us", 0.0005),
        (v.parse_bind, "unix:/" + "a" * 99, BindAddress(path="/" + "a" * 99)),
        (v.parse_bind, "127.0.0.1:65535", BindAddress(host="127.0.0.1", port=65535)),
        (v.parse_bind, "[::1]:9464", BindAddress(host="::1", port=9464)),
        (v.parse_buckets, [1, 2.5, 10], (1.0, 2.5, 10.0)),
        (v.parse_buckets, (0.1,), (0.1,)),
        (v.parse_name_prefix, "", ""),
        (v.parse_name_prefix, "ron_metrics_", "ron_metrics_"),
        (v.parse_str_mapping, {"a": "1", "b": "2"}, {"a": "1", "b": "2"}),
    ],
)
def test_parsers_accept(parser: object, raw: object, expected: object) -> None:
    """Each parser turns its accepted spellings into the typed value."""
    assert parser(raw) == expected  # type: ignore[operator]  # parsers passed as object


@pytest.mark.parametrize(
    ("parser", "raw", "type_name"),
    [(v.parse_bool, 1, "int"), (v.parse_positive_int, 1.5, "float")],
)
def test_non_strings_are_not_told_to_drop_quotes(
    parser: object, raw: object, type_name: str
) -> None:
    """The 'without quotes' hint is for strings only; the message names the type."""
    with pytest.raises(InvalidValueError) as caught:
        parser(raw)  # type: ignore[operator]  # parsers passed as object
    assert "quotes" not in str(caught.value)
    assert type_name in str(caught.value)


@pytest.mark.parametrize(
    ("parser", "raw", "fragment"),
    [
        (v.parse_bool, "maybe", "true or false"),
        (v.parse_bool, 1, "true or false"),
        # Strict: a string is never a boolean, a number or a list.
        (v.parse_bool, "yes", "without quotes"),
        (v.parse_bool, "false", "without quotes"),
        (v.parse_bool, "true", "without quotes"),
        (v.parse_positive_int, " 12 ", "without quotes"),
        (v.parse_positive_int, "\u00b2", "positive integer"),
        (v.parse_name_list, "http.route", "list of names"),
        (v.parse_duration, "\u0663s", "duration"),
        (v.parse_bind, "127.0.0.1:\u00b2", "HOST:PORT"),
        (v.parse_bind, "127.0.0.1:\u0663", "HOST:PORT"),
        (v.parse_positive_int, True, "boolean"),
        (v.parse_positive_int, "x", "positive integer"),
        (v.parse_positive_int, 0, ">= 1"),
        (v.parse_str, 5, "expected a string"),
        (v.parse_str, "  ", "empty"),
        (v.parse_optional_str, 5, "expected a string"),
        (v.parse_name_list, 5, "list of names"),
        (v.parse_name_list, ["ok", 5], "not a valid name"),
        (v.parse_str_mapping, ["a"], "table of strings"),
        (v.parse_str_mapping, {"a": 1}, "string to a string"),
        (v.parse_duration, True, "boolean"),
        (v.parse_duration, [1], "duration string"),
        (v.parse_duration, "fast", "duration"),
        (v.parse_duration, -1, "positive"),
        (v.parse_duration, float("inf"), "positive"),
        (v.parse_bind, 80, "HOST:PORT"),
        (v.parse_bind, "unix:rel", "absolute"),
        (v.parse_bind, "unix:/" + "a" * 120, "100 bytes"),
        (v.parse_bind, "127.0.0.1", "HOST:PORT"),
        (v.parse_bind, ":80", "host part is empty"),
        (v.parse_bind, "example.com:80", "IP address"),
        (v.parse_bind, "1.2.3.4:99999", "out of range"),
        (v.parse_bind, "1.2.3.4:65536", "out of range"),
        (v.parse_bind, "unix:/" + "a" * 100, "100 bytes"),
        (v.parse_bind, "unix:/a\x00b", "NUL"),
        (v.parse_bind, "[::1:80", "IP address"),
        (v.parse_bind, "::1]:80", "IP address"),
        (v.parse_duration, "0", "positive"),
        (v.parse_duration, 0, "positive"),
        (v.parse_buckets, [], "non-empty list"),
        (
            v.parse_buckets,
            "1,2",
            "non-empty list of numbers .*, got str",
        ),
        (v.parse_buckets, [1, "2"], "must be numbers, got str"),
        (v.parse_buckets, [1, True], "must be numbers, got bool"),
        (v.parse_buckets, [1, float("inf")], "must be finite"),
        (v.parse_buckets, [1, float("nan")], "must be finite"),
        (v.parse_buckets, [1, 1], "strictly increasing"),
        (v.parse_buckets, [1, 2, 1.5], "strictly increasing"),
        (v.parse_buckets, [3, 1, 2], "strictly increasing"),
        (v.parse_name_prefix, "ron", "ending in '_'"),
        (v.parse_name_prefix, "Ron_", "lower-case prefix"),
        (v.parse_name_prefix, 5, "lower-case prefix"),
        (v.parse_str_mapping, {1: "a"}, "string to a string"),
    ],
)
def test_parsers_refuse_with_a_reason(
    parser: object, raw: object, fragment: str
) -> None:
    """Each parser refuses bad input with a message that says what was expected."""
    with pytest.raises(InvalidValueError, match=fragment):
        parser(raw)  # type: ignore[operator]  # parsers passed as object


@pytest.mark.parametrize(
    ("raw", "text", "loopback", "unix"),
    [
        ("127.0.0.1:0", "127.0.0.1:0", True, False),
        ("[::1]:9464", "[::1]:9464", True, False),
        ("localhost:1", "localhost:1", True, False),
        ("10.0.0.1:80", "10.0.0.1:80", False, False),
        ("unix:/run/m.sock", "unix:/run/m.sock", True, True),
    ],
)
def test_bind_addresses(raw: str, text: str, loopback: bool, unix: bool) -> None:
    """Bind addresses round-trip to text and know whether they are loopback or UDS."""
    address = v.parse_bind(raw)
    assert str(address) == text
    assert address.is_loopback is loopback
    assert address.is_unix is unix


def test_unparsable_host_is_not_loopback() -> None:
    """A host that is not an IP is never treated as loopback."""
    assert not BindAddress(host="nonsense", port=1).is_loopback


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [("a", "a"), ("b", "b"), ("c", "must be one of 'a', 'b', got 'c'"), (5, "got 5")],
)
def test_choice_parser(raw: object, outcome: str) -> None:
    """parse_choice accepts exactly its choices and lists them when refusing."""
    parse = v.parse_choice("a", "b")  # built here, at test time, like the loader does
    if outcome in {"a", "b"}:
        assert parse(raw) == outcome
        return
    with pytest.raises(InvalidValueError) as caught:
        parse(raw)
    assert outcome in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        (["a"], ("a",)),
        (["b", "a", "b"], ("b", "a")),
        ([], ()),
        (["a", "c"], "'c' is not one of 'a', 'b'"),
        (["c", "d"], "'c' is not one of 'a', 'b'"),
        ("a", "expected a list of names"),
        ([5], "5 is not a valid name"),
    ],
)
def test_choice_list_parser(raw: object, outcome: object) -> None:
    """parse_choice_list keeps the order, drops repeats, names the first stranger."""
    parse = v.parse_choice_list("a", "b")
    if isinstance(outcome, tuple):
        assert parse(raw) == outcome
        return
    with pytest.raises(InvalidValueError) as caught:
        parse(raw)
    assert str(outcome) in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        (2, 2),
        (5, 5),
        (-4, "must be from 2 to 5, got -4"),
        (1, "must be from 2 to 5, got 1"),
        (6, "must be from 2 to 5, got 6"),
        (True, "expected an integer from 2 to 5, got"),
        (2.0, "expected an integer from 2 to 5, got"),
        ("3", "expected an integer from 2 to 5, got"),
    ],
)
def test_int_between_parser(raw: object, outcome: object) -> None:
    """parse_int_between takes whole numbers in its closed range, never a bool or text."""
    parse = v.parse_int_between(2, 5)
    if isinstance(outcome, int):
        assert parse(raw) == outcome
    else:
        with pytest.raises(InvalidValueError) as caught:
            parse(raw)
        assert str(caught.value).startswith(str(outcome))
