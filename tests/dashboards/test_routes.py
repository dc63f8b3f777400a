"""Command-bar text and URLs: every page round-trips, awkward names survive, bad input is named."""

from __future__ import annotations

import pytest

from mltrace_otel.dashboards.routes import Action, CommandError, Route, parse_command, route_from_url

AWKWARD = ["raw/wine data.csv", 'q"uote\'s.csv', "ü/ñ/数据.parquet", "100%/a?b#c&d=e", "..", ".", "/abs/x"]


@pytest.mark.parametrize("name", AWKWARD)
def test_pointer_names_round_trip_through_url_and_bar(name):
    route = Route("trace", name)
    path, _, query = route.url.partition("?")
    assert "#" not in route.url and " " not in route.url
    assert path.count("/") == (1 if name in (".", "..") else 2)  # one path segment
    assert route_from_url(path, "?" + query if query else "") == route
    assert parse_command(route.text) == route


@pytest.mark.parametrize("text,url", [
    ("recent", "/recent"), ("recent 50", "/recent?limit=50"), ("history train 30", "/history/train?limit=30"),
    ("inspect 3a5c", "/inspect/3a5c"), ("impact clean/wine.csv", "/impact/clean%2Fwine.csv"),
    ("tag", "/tag"), ("tag wine", "/tag/wine"), ("review", "/review"), ("stale", "/stale"),
    ("stale train", "/stale?component=train"), ("help", "/help"),
    ("components --owner bo --tag wine", "/components?owner=bo&tag=wine"),
])
def test_each_page_command_is_a_url(text, url):
    route = parse_command(text)
    assert route.url == url
    path, _, query = url.partition("?")
    assert route_from_url(path, query).url == url


def test_flag_and_unflag_are_actions():
    assert parse_command("flag 'pred/1 2'") == Action("flag", "pred/1 2")
    assert parse_command("unflag x") == Action("unflag", "x")
    assert parse_command("unflag --all") == Action("unflag", all=True)


@pytest.mark.parametrize("text,message", [
    ("", "type a command"), ("tarce x", "unknown command 'tarce'"), ("trace", "trace needs an argument"),
    ('trace "open', "close the quote"), ("recent ten", "is not a number"), ("flag", "flag takes one output"),
    ("components --colour red", "unknown option"),
])
def test_bad_commands_say_what_is_wrong(text, message):
    with pytest.raises(CommandError) as e:
        parse_command(text)
    assert message in str(e.value)


def test_unknown_path_and_root():
    assert route_from_url("/", "").command == "recent"
    r = route_from_url("/nothing/here", "")
    assert r.command == "help" and r.param("unknown") == "/nothing/here"
    assert route_from_url("/recent", "?limit=abc").limit() == 20  # a bad limit falls back
