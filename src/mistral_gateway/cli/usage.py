"""``mistral-gateway usage``: usage records from the database, raw or aggregated (like ``GET /admin/usage``)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Any

from mistral_gateway.cli.common import add_location_args, bounded_int, settings_from
from mistral_gateway.protocol.admin import MAX_USAGE_LIMIT, MAX_USAGE_PAGE, USAGE_GROUPS

__all__ = ["register"]


def register(sub: Any) -> None:
    usage = sub.add_parser("usage", help="usage records: per request, or aggregated with --by")
    usage.add_argument("--since", help="unix seconds, ISO date or date-time (UTC by default), or a span back from "
                                       "now: 15m, 24h, 7d")
    usage.add_argument("--until", help="same forms as --since (exclusive)")
    usage.add_argument("--by", choices=USAGE_GROUPS, help="aggregate by this column")
    usage.add_argument("--limit", type=bounded_int(1, MAX_USAGE_LIMIT), default=50,
                       help="records to print without --by (newest first)")
    usage.add_argument("--page", type=bounded_int(0, MAX_USAGE_PAGE), default=0)
    usage.add_argument("--json", action="store_true")
    add_location_args(usage)
    usage.set_defaults(func=_usage)


def _usage(args: argparse.Namespace) -> int:
    from mistral_gateway.services.container import build_services
    from mistral_gateway.services.usage import parse_time

    now = time.time()
    since = parse_time(args.since, now=now, param="--since") if args.since else None
    until = parse_time(args.until, now=now, param="--until") if args.until else None
    services = build_services(settings_from(args))
    try:
        if args.by:
            rows = [{**asdict(r), "total_tokens": r.prompt_tokens + r.completion_tokens}
                    for r in services.usage.summary(args.by, since=since, until=until)]
            _print_summary(args.by, rows, args.json)
        else:
            records, total = services.usage.list(since=since, until=until, limit=args.limit, page=args.page)
            _print_records([asdict(r) for r in records], total, args.json)
    finally:
        services.close()
    return 0


def _print_summary(by: str, rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{by.upper():<32} {'REQUESTS':>9} {'ERRORS':>7} {'PROMPT':>10} {'COMPLETION':>11} {'TOTAL':>10} "
          f"{'MEAN MS':>9}")
    for r in rows:
        print(f"{str(r['key'] or '-')[:32]:<32} {r['requests']:>9} {r['errors']:>7} {r['prompt_tokens']:>10} "
              f"{r['completion_tokens']:>11} {r['total_tokens']:>10} {r['mean_latency_ms']:>9.1f}")


def _print_records(records: list[dict[str, Any]], total: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps(records, indent=2))
        return
    print(f"{'TIME (UTC)':<20} {'TOKEN':<26} {'WORKSPACE':<12} {'OPERATION':<24} {'MODEL':<24} {'BACKEND':<8} "
          f"{'STATUS':>6} {'MS':>8} {'PROMPT':>7} {'COMPL':>7}")
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["created_at"]))
        print(f"{when:<20} {r['token_id'][:26]:<26} {r['workspace'][:12]:<12} {r['operation'][:24]:<24} "
              f"{(r['model'] or '-')[:24]:<24} {r['backend'][:8]:<8} {r['status']:>6} {r['latency_ms']:>8.1f} "
              f"{r['prompt_tokens']:>7} {r['completion_tokens']:>7}")
    print(f"{len(records)} of {total} record(s)")
