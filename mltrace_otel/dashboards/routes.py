"""Routes of the triage UI: command-bar text <-> URL paths, with no Dash and no store.

Every page is a URL that survives a reload and can be shared: ``/recent``, ``/history/<component>``,
``/inspect/<run>``, ``/diff/<run>``, ``/trace/<output>``, ``/tag/<tag>``, ``/review``,
``/impact/<output or run>``, ``/stale``, ``/components``, ``/help``. The argument is
percent-encoded as one path segment (pointer names may hold slashes, quotes, ``%`` or unicode);
names a browser would rewrite (``.``, ``..``, "") travel as ``?arg=`` instead. ``flag`` and
``unflag`` are actions, not pages: the bar runs them and then shows ``/review``.

Imports only the standard library and :mod:`mltrace_otel.errors`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode

from mltrace_otel.errors import CommandError

PAGES: dict[str, str] = {
    "recent": "recent [N] — the newest runs as a table, N per page (default 20): filter by status, "
              "component, owner, tag and time, sort by a column, click a row for its card",
    "history": "history COMPONENT [N] — a component's runs with a duration/failure chart and a date range",
    "inspect": "inspect RUN_ID — one run's card (a unique prefix of 4+ characters works)",
    "diff": "diff RUN_ID — what changed since the component's previous run: inputs, outputs, code",
    "trace": "trace OUTPUT — the runs that produced an output, as a lineage graph (a run id also works)",
    "impact": "impact OUTPUT|RUN_ID — everything downstream of an output or a run",
    "tag": "tag [TAG] — the components with a tag (without TAG: every tag)",
    "review": "review [N] [--since WHEN] [--component C] [--tag T] — flagged outputs and the runs they "
              "share, ranked by coverage, then evidence (failed, failed test, stale, changed), with why",
    "stale": "stale [COMPONENT] [--direct] — latest runs that are stale now (--direct: leave out "
             "staleness inherited from upstream)",
    "components": "components [--owner O] [--tag T] — every component",
    "help": "help — this list",
}
"""Every page command, with its usage line (the help page and the docs show these)."""

ACTIONS: dict[str, str] = {
    "flag": "flag OUTPUT — flag an output for review, then show the review",
    "unflag": "unflag OUTPUT | --all — unflag one output or all of them, then show the review",
}
"""Commands that change the store instead of naming a page."""

COMMANDS = {**PAGES, **ACTIONS}
_NEEDS_ARG = {"history", "inspect", "diff", "trace", "impact"}
_DEFAULT_LIMIT = {"recent": 20, "history": 100, "review": 50, "stale": 100}


@dataclass(frozen=True)
class Route:
    """One page: the command, its main argument ("" when none) and its query parameters."""

    command: str
    arg: str = ""
    params: tuple[tuple[str, str], ...] = field(default=())

    def param(self, name: str, default: str = "") -> str:
        """A query parameter's value, or ``default``."""
        for k, v in self.params:
            if k == name:
                return v
        return default

    def limit(self) -> int:
        """The ``limit`` parameter as a positive int (the command's default when absent or bad)."""
        default = _DEFAULT_LIMIT.get(self.command, 20)
        raw = self.param("limit")
        try:
            n = int(raw)
        except ValueError:
            return default
        return min(max(n, 1), 1000)

    @property
    def url(self) -> str:
        """The shareable relative URL of this page."""
        path = f"/{self.command}"
        params = list(self.params)
        if self.arg in (".", ".."):
            params.insert(0, ("arg", self.arg))
        elif self.arg:
            path += "/" + quote(self.arg, safe="")
        return path + (("?" + urlencode(params)) if params else "")

    @property
    def text(self) -> str:
        """The command-bar text that leads to this page."""
        words = [self.command] + ([self.arg] if self.arg else [])
        if self.command in ("recent", "history", "review") and self.param("limit"):
            words.append(self.param("limit"))
        if self.command == "stale" and self.param("component"):
            words.append(self.param("component"))
        if self.command == "stale" and self.param("direct"):
            words.append("--direct")
        for opt in ("since", "component", "tag"):
            if self.command == "review" and self.param(opt):
                words += [f"--{opt}", self.param(opt)]
        for opt in ("owner", "tag"):
            if self.command == "components" and self.param(opt):
                words += [f"--{opt}", self.param(opt)]
        return " ".join(_quote(w) for w in words)


@dataclass(frozen=True)
class Action:
    """A command that changes the store: ``flag`` / ``unflag`` one pointer, or ``unflag`` all."""

    command: str
    pointer: str = ""
    all: bool = False


def _quote(word: str) -> str:
    if word and not any(c.isspace() or c in "'\"\\" for c in word):
        return word
    if '"' not in word and "\\" not in word:
        return f'"{word}"'
    return shlex.quote(word)


def route_from_url(pathname: str | None, search: str | None = None) -> Route:
    """The page a URL names. Unknown paths give the ``help`` route with ``unknown`` set."""
    path = pathname or "/"
    head, _, rest = path.lstrip("/").partition("/")
    params = tuple(parse_qsl((search or "").lstrip("?"), keep_blank_values=True))
    arg = unquote(rest) if rest else ""
    extra = [p for p in params if p[0] != "arg"]
    for k, v in params:
        if k == "arg" and not arg:
            arg = v
    command = head or "recent"
    if command not in PAGES:
        return Route("help", "", (("unknown", unquote(path)),))
    return Route(command, arg, tuple(extra))


def _limit_word(command: str, words: list[str]) -> tuple[tuple[str, str], ...]:
    if not words:
        return ()
    if len(words) > 1 or not words[0].isdigit() or int(words[0]) < 1:
        raise CommandError(f"{command}: {' '.join(words)!r} is not a number of runs",
                           hint=f"usage: {COMMANDS[command]}")
    return (("limit", words[0]),)


def _options(command: str, words: list[str], names: tuple[str, ...], usage: str
             ) -> tuple[tuple[str, str], ...]:
    """``--name value`` pairs among ``words`` (in order), as route parameters."""
    out: list[tuple[str, str]] = []
    it = iter(words)
    for w in it:
        if w.startswith("--"):
            if w not in names:
                raise CommandError(f"{command}: unknown option {w!r}", hint=usage)
            value = next(it, None)
            if value is None:
                raise CommandError(f"{command}: {w} needs a value", hint=usage)
            out.append((w[2:], value))
    return tuple(out)


def _positional(words: list[str]) -> list[str]:
    """``words`` without their ``--name value`` pairs."""
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w.startswith("--"):
            skip = True
        else:
            out.append(w)
    return out


def parse_command(text: str) -> Route | Action:
    """Parse the command bar's text into the page to show or the action to run.

    Quoting follows the shell (``trace "my file.csv"``). A bare run id or pointer is not
    guessed at: every line starts with a command.

    Raises:
        CommandError: unknown command, missing argument, bad quoting or bad number.
    """
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise CommandError(f"cannot read {text!r}: {e}", hint="close the quote") from None
    if not words:
        raise CommandError("type a command", hint="try 'help'")
    command, rest = words[0].lower(), words[1:]
    if command not in COMMANDS:
        raise CommandError(f"unknown command {words[0]!r}", hint="type 'help' for the list")
    usage = f"usage: {COMMANDS[command]}"
    if command in ACTIONS:
        if command == "unflag" and rest == ["--all"]:
            return Action("unflag", all=True)
        if len(rest) != 1:
            raise CommandError(f"{command} takes one output", hint=usage)
        return Action(command, pointer=rest[0])
    if command in _NEEDS_ARG:
        if not rest:
            raise CommandError(f"{command} needs an argument", hint=usage)
        arg, rest = rest[0], rest[1:]
        params = _limit_word(command, rest) if command == "history" else ()
        if command != "history" and rest:
            raise CommandError(f"{command} takes one argument", hint=usage)
        return Route(command, arg, params)
    if command == "recent":
        return Route(command, "", _limit_word(command, rest))
    if command == "review":
        opts = _options(command, rest, ("--since", "--component", "--tag"), usage)
        return Route("review", "", _limit_word(command, _positional(rest)) + opts)
    if command == "stale":
        direct = "--direct" in rest
        rest = [w for w in rest if w != "--direct"]
        if len(rest) > 1:
            raise CommandError("stale takes at most one component", hint=usage)
        params = ((("component", rest[0]),) if rest else ()) + ((("direct", "1"),) if direct else ())
        return Route("stale", "", params)
    if command == "tag":
        if len(rest) > 1:
            raise CommandError("tag takes one tag", hint=usage)
        return Route("tag", rest[0] if rest else "")
    if command == "components":
        params: list[tuple[str, str]] = []
        it = iter(rest)
        for w in it:
            if w not in ("--owner", "--tag"):
                raise CommandError(f"components: unknown option {w!r}", hint=usage)
            value = next(it, None)
            if value is None:
                raise CommandError(f"components: {w} needs a value", hint=usage)
            params.append((w[2:], value))
        return Route("components", "", tuple(params))
    if rest:
        raise CommandError(f"{command} takes no argument", hint=usage)
    return Route(command)
