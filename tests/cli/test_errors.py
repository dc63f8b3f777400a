"""Bad input is one clear line and exit code 1, never a traceback; zero results are not errors."""

from __future__ import annotations

from cli_helpers import invoke, ok_json

from mltrace_otel.settings import Settings


def _one_error_line(result) -> str:  # noqa: ANN001
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: "), result.output
    return result.stderr


def test_unreachable_store_names_the_url_masked_and_what_to_check() -> None:
    url = "http://default:s3cret@127.0.0.1:1/mltrace"
    result = invoke(None, "--store", url, "recent")
    err = _one_error_line(result)
    assert "127.0.0.1:1" in err
    assert "s3cret" not in result.output
    assert "hint:" in err and "ClickHouse" in err


def test_store_option_may_follow_the_command() -> None:
    for args in (["recent", "--store", "http://127.0.0.1:1/db"], ["stale", "--store=http://127.0.0.1:1/db"]):
        assert "127.0.0.1:1" in _one_error_line(invoke(None, *args))


def test_unreachable_store_from_the_environment(tmp_settings: Settings) -> None:
    result = invoke(tmp_settings, "stale", store=False,
                    env={"MLTRACE_CLICKHOUSE_URL": "http://127.0.0.1:1/db"})
    assert "127.0.0.1:1" in _one_error_line(result)


def test_bad_environment_value_names_the_variable(tmp_settings: Settings) -> None:
    result = invoke(tmp_settings, "recent", env={"MLTRACE_STORE_WAIT_S": "soon"})
    err = _one_error_line(result)
    assert "MLTRACE_STORE_WAIT_S" in err and "soon" in err


def test_bad_store_url_scheme(tmp_settings: Settings) -> None:
    err = _one_error_line(invoke(None, "--store", "ftp://host/db", "recent"))
    assert "unknown scheme" in err and "chdb://" in err


def test_empty_store_is_friendly_not_an_error(tmp_settings: Settings) -> None:
    for args in (["recent"], ["stale"], ["review"], ["components"], ["tags"]):
        result = invoke(tmp_settings, *args)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip(), args
    assert ok_json(invoke(tmp_settings, "recent", "--json")) == []
    assert ok_json(invoke(tmp_settings, "stale", "--json")) == []
    assert ok_json(invoke(tmp_settings, "review", "--json"))["flagged"] == []


def test_unknown_names_on_an_empty_store(tmp_settings: Settings) -> None:
    assert "nope" in _one_error_line(invoke(tmp_settings, "history", "nope"))
    assert "deadbeef" in _one_error_line(invoke(tmp_settings, "inspect", "deadbeef"))
    assert "nope.csv" in _one_error_line(invoke(tmp_settings, "trace", "nope.csv"))
    assert "nope" in _one_error_line(invoke(tmp_settings, "tag", "nope"))


def test_flag_usage_errors(tmp_settings: Settings) -> None:
    _one_error_line(invoke(tmp_settings, "trace"))  # neither OUTPUT nor --run
    _one_error_line(invoke(tmp_settings, "unflag"))  # neither OUTPUT... nor --all
    err = _one_error_line(invoke(tmp_settings, "history", "x", "--since", "last tuesday"))
    assert "--since" in err
    assert invoke(tmp_settings, "recent", "--nope").exit_code == 2  # click's usage error


def test_ambiguous_prefix_lists_the_candidates(tmp_settings: Settings) -> None:
    """Log runs through the SDK until two run ids share their first 4 hex chars (birthday bound:
    a few hundred), then type that prefix."""
    from cli_helpers import log_with_sdk

    from mltrace_otel.sdk.run import ComponentRun, log_component_run

    pair: list[str] = []

    def body() -> None:
        seen: dict[str, str] = {}
        for _ in range(20000):
            cr = ComponentRun("noise")
            cr.set_start_timestamp()
            cr.set_end_timestamp()
            log_component_run(cr)
            other = seen.setdefault(cr.id[:4], cr.id)
            if other != cr.id:
                pair.extend([other, cr.id])
                return

    log_with_sdk(tmp_settings, body)
    assert len(pair) == 2
    prefix = pair[0][:4]
    for args in (["inspect", prefix], ["notes", prefix, "x"], ["trace", "--run", prefix]):
        result = invoke(tmp_settings, *args)
        err = _one_error_line(result)
        assert prefix in err and pair[0] in err and pair[1] in err, args
        assert err.count("noise") == 2  # each candidate named with its component
        assert "hint:" in err
