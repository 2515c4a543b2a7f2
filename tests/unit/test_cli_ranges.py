"""CLI integer flags have ranges: a huge or malformed number is argparse's usage error (exit 2), not a traceback
or an OverflowError from SQLite."""

from __future__ import annotations

import pytest

from mistral_gateway.cli import build_parser

BAD = ["99999999999999999999", "9223372036854775808", "-1", "١٢", "1" * 5000, "1e3", ""]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("argv", [
    ["tokens", "create", "--name", "x", "--expires-in"],
    ["tokens", "create", "--name", "x", "--rpm"],
    ["tokens", "create", "--name", "x", "--tpm"],
    ["tokens", "create", "--name", "x", "--concurrency"],
    ["usage", "--page"],
    ["usage", "--limit"],
    ["serve", "--port"],
    ["serve", "--workers"],
    ["files", "list", "--page"],
    ["files", "list", "--page-size"],
    ["chat", "hi", "--max-tokens"],
    ["chat", "hi", "--retries"],
])
def test_out_of_range_flags_are_usage_errors(argv: list[str], value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*argv, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and ("not between" in err or "not an integer" in err) and len(err) < 2000


def test_in_range_flags_parse() -> None:
    args = build_parser().parse_args(["usage", "--limit", "1000", "--page", "1000000"])
    assert (args.limit, args.page) == (1000, 1000000)
    args = build_parser().parse_args(["tokens", "create", "--name", "x", "--expires-in", " 3600 "])
    assert args.expires_in == 3600
    assert build_parser().parse_args(["serve"]).workers == 1
    assert build_parser().parse_args(["serve", "--workers", "64"]).workers == 64
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "65"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])
