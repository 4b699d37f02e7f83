"""``crmstream`` command line: worker, api, demo, simulate, replay; reading Redis: customer, top, also-bought,
recommend, kpis, segments, alerts, items; api-key, create-topics, schemas."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from streams.config import ConfigError, Settings

__all__ = ["main"]

T = TypeVar("T")


def _with_redis(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(client)`` (a coroutine function) against CRM_REDIS_URL, closing the client afterwards."""
    import asyncio

    from streams.redis_store import redis_client

    async def run():
        client = redis_client(settings.redis_url, settings.redis_cluster)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _worker(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    import faust

    from streams.app import create_app, create_trainer_app
    from streams.logs import logging_config

    app = create_trainer_app(settings) if args.trainers_only else create_app(settings, args.loglevel)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True,
                          logging_config=logging_config(settings.log_format, args.loglevel))
    worker.execute_from_commandline()  # returns only via SystemExit
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from schemas.jsonschema import write_schema_files

    for path in write_schema_files(Path(args.out)):
        print(path)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from streams.simulate_cli import run_simulate

    return run_simulate(args)


def _demo(args: argparse.Namespace) -> int:
    from streams.demo import run_demo

    return run_demo(args)


def _replay(args: argparse.Namespace) -> int:
    import asyncio

    from streams.producer import send_to_kafka
    from streams.replay import ColumnMapping, MissingColumns, ReplayReport, numbered_rows, progress_bar, rows_to_events

    settings = Settings.from_env()
    if not settings.kafka_bootstrap and not args.dry_run:
        print("CRM_KAFKA_BOOTSTRAP is not set", file=sys.stderr)
        return 2
    mapping = ColumnMapping(customer=args.customer, time=args.time, order=args.order or None, sku=args.sku or None,
                            qty=args.qty, price=args.price, amount=args.amount, category=args.category,
                            time_format=args.time_format, timezone=args.timezone, currency=args.currency)
    report = ReplayReport()
    try:
        events = rows_to_events(numbered_rows(Path(args.file)), mapping, report)
    except (MissingColumns, OSError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    print(report.summary(args.currency))
    if report.skipped_lines > args.max_skipped:
        print(f"replay: {report.skipped_lines:,} lines could not be read (--max-skipped {args.max_skipped}); "
              "nothing was sent. Fix the file or the column options, or allow them with --max-skipped.",
              file=sys.stderr)
        return 1
    if args.dry_run:
        print("dry run: nothing sent")
        return 0
    sent = asyncio.run(send_to_kafka(events, settings, args.rate, progress=progress_bar))
    print(f"sent {sent:,} events with their original event time")
    return 0


def _customer(args: argparse.Namespace) -> int:
    import orjson

    from api.customers import CustomerReader

    settings = Settings.from_env()
    try:
        profile = _with_redis(settings, lambda client: CustomerReader(
            client, settings.key_space(), settings.profile_settings()).profile(args.id))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if profile is None:
        print(f"no customer {args.id!r}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(profile, option=orjson.OPT_INDENT_2).decode())
    else:
        print(_customer_card(profile))
    return 0


def _customer_card(p: dict) -> str:
    """The profile as a support agent reads it at a shell."""
    from datetime import datetime, timezone

    def day(ms: int | None) -> str:
        return "-" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d")

    def money(minor: int | None) -> str:
        return "-" if minor is None else f"{minor / 100:,.2f}"

    churn, segment, rfm = p["churn"], p["behaviour_segment"], p["rfm"]
    reasons = ", ".join(f"{f['feature']} {_direction(f.get('contribution'))}" for f in churn["top_features"]) \
        if churn else ""
    lines = [
        ("customer", f"{p['customer_id']}   (as of {day(p['as_of_ms'])}, first seen {day(p['first_seen_ms'])})"),
        ("RFM", f"R{rfm['r']} F{rfm['f']} M{rfm['m']}  {p['rfm_segment']}  value score {p['value_score']}"
         if rfm else "-"),
        ("behaviour segment", f"{segment['id']} {segment['name'] or ''}".strip() if segment else "-"),
        ("churn risk", f"{churn['churn_p']:.2f} ({churn['band']})  because {reasons}" if churn else "not scored"),
        ("orders", f"{p['orders']}  net spend {money(p['net_spend_minor'])}  average order "
                   f"{money(p['average_order_minor'])}"),
        ("recency", "-" if p["recency_days"] is None else f"{p['recency_days']:.0f} days (last order "
                                                          f"{day(p['last_order_ms'])})"),
        ("CLV", f"predicted {money(p['predicted_clv_minor'])}  P(alive) {p['probability_alive']}"),
        ("expected next order", day(p["expected_next_order_ms"])),
        ("engagement", "  ".join(f"{k} {v:.2f}" for k, v in p["engagement"].items())),
        ("recent items", ", ".join(f"{i['sku']} ({i['kind']})" for i in p["recent_items"][:8]) or "-"),
    ]
    return "\n".join(f"{name:20} {value}" for name, value in lines)


def _direction(contribution: float | None) -> str:
    """How a feature moved the risk: up, down, not at all, or not weighed (scores stored before weights were kept).

    >>> _direction(0.4), _direction(-0.1), _direction(0.0), _direction(None)
    ('+', '-', '0', '?')
    """
    return "?" if contribution is None else "+" if contribution > 0 else "-" if contribution < 0 else "0"


def _top(args: argparse.Namespace) -> int:
    """The most valuable customers of a churn band (or by churn risk), as support works through them."""
    import orjson

    from api.customers import CustomerReader

    settings = Settings.from_env()
    try:
        page = _with_redis(settings, lambda client: CustomerReader(
            client, settings.key_space(), settings.profile_settings()).search(
            band=args.band, segment=args.segment, sort=args.sort, limit=args.limit))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(page, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{page['total']:,} customers match; the first {len(page['customers'])} by {args.sort}:")
    print(f"{'customer':<20} {'net spend':>12} {'churn p':>7} {'band':<7} {'recency':>7}  rfm segment / behaviour")
    for c in page["customers"]:
        behaviour = c["behaviour_segment"]["name"] if c["behaviour_segment"] else "-"
        recency = "-" if c["recency_days"] is None else f"{c['recency_days']:.0f}d"
        churn = "-" if c["churn_p"] is None else f"{c['churn_p']:.2f}"
        print(f"{c['customer_id']:<20} {c['net_spend_minor'] / 100:>12,.2f} {churn:>7} {c['band'] or '-':<7} "
              f"{recency:>7}  {c['rfm_segment'] or '-'} / {behaviour}")
    return 0


def _kpis(args: argparse.Namespace) -> int:
    import orjson

    from api.kpis import read_kpis

    settings = Settings.from_env()
    rows = _with_redis(settings, lambda client: read_kpis(
        client, settings.key_space(), args.by, settings.horizon_days, args.last))
    if args.segment:
        rows = [{"bucket": row["bucket"], **{c: None for c in ("churned", "churn_rate")},
                 **row["segments"].get(args.segment, {})} for row in rows]
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    columns = ("bucket", "active", "buyers", "orders", "revenue_minor", "average_order_minor",
               "repeat_purchase_rate", "churned", "churn_rate", "csat_pct", "nps", "engagement")
    print("  ".join(f"{c[:12]:>12}" for c in columns))
    for row in rows:
        cells = [row.get(c) for c in columns]
        print("  ".join(f"{v:>12.3f}" if isinstance(v, float) else f"{'-' if v is None else v!s:>12}" for v in cells))
    return 0


def _iso_day(text: str) -> str:
    """An event-time day label, validated (it becomes part of a Redis key)."""
    import datetime

    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD day: {text!r}") from None


def _segments(args: argparse.Namespace) -> int:
    import orjson

    from api.segments import read_segments

    settings = Settings.from_env()
    overview = _with_redis(settings, lambda client: read_segments(client, settings.key_space(), args.day or None))
    if overview is None:
        print("no segment snapshot yet (the trainer publishes after CRM_SEGMENT_WARMUP samples)", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(overview, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"segments v{overview['version']} ({overview['algorithm']}, {overview['samples']:,} samples, "
          f"changed {overview['changed_share']})")
    print(f"{'id':>4}  {'name':<40} {'customers':>9} {'share':>6} {'revenue':>7} {'churn p':>7}")
    for s in overview["segments"] + overview["retired"]:
        churn = "-" if s["mean_churn_p"] is None else f"{s['mean_churn_p']:.2f}"
        print(f"{s['id']:>4}  {s.get('name', '(retired)'):<40} {s['customers']:>9,} {s['customer_share']:>6.1%} "
              f"{s['revenue_share']:>7.1%} {churn:>7}")
    matrix = overview["migrations"]
    targets = sorted({target for row in matrix.values() for target in row}, key=int)
    sources = (["new"] if "new" in matrix else []) + sorted((s for s in matrix if s != "new"), key=int)
    print("\nmigrations (rows: from, columns: to)")
    print("      " + "".join(f"{target:>7}" for target in targets))
    for source in sources:
        print(f"{source:>5} " + "".join(f"{matrix[source].get(target, 0):>7}" for target in targets))
    return 0


def _alerts(args: argparse.Namespace) -> int:
    import orjson

    from api.alerts import AlertReader

    settings = Settings.from_env()
    try:
        if args.ack:
            found = _with_redis(settings, lambda client: AlertReader(client, settings.redis_prefix).acknowledge(
                args.ack, args.by, args.note))
            if found is None:
                print(f"no alert {args.ack}", file=sys.stderr)
                return 1
            alerts = [found]
        else:
            alerts = _with_redis(settings, lambda client: AlertReader(client, settings.redis_prefix).recent(
                args.limit, args.kind, args.status))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(alerts, option=orjson.OPT_INDENT_2).decode())
        return 0
    from datetime import datetime, timezone

    for alert in alerts:
        when = datetime.fromtimestamp(alert["ts_ms"] / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
        subject = alert.get("customer_id") or (
            f"segment {alert['segment_id']} {alert.get('segment_name') or ''}".strip()
            if alert.get("segment_id") is not None else "whole base")
        evidence = alert["evidence"]
        measure = f"{alert['signal']} " if alert.get("signal") not in (None, "risk") else ""
        detail = (f"{measure}observed {evidence['observed']} vs expected {evidence['expected']:.2f}"
                  if alert["kind"] == "aggregate" else
                  f"churn_p {evidence.get('churn_p', '-')}, next: "
                  + (alert["next_best_actions"][0]["action"] if alert.get("next_best_actions") else "-"))
        print(f"{when}  {alert['severity']:<8} {alert['status']:<12} {alert['rule']:<20} {subject:<30} {detail}"
              f"  [{alert['id']}]")
    return 0


def _items(args: argparse.Namespace) -> int:
    """Also bought / viewed then bought / recommendations from Redis, or a rebuild of the matrices."""
    import orjson

    from api.customers import CustomerReader
    from api.items import ItemReader

    settings = Settings.from_env()
    if not settings.redis_url:
        print("CRM_REDIS_URL is not set", file=sys.stderr)
        return 2

    async def run(client) -> dict:
        customers = CustomerReader(client, settings.key_space(), settings.profile_settings())
        if args.items_command == "rebuild":
            return await _rebuild_items(client, customers, settings, args)
        reader = ItemReader(client, settings.key_space(), settings.item_settings(), customers)
        if args.items_command == "recommend":
            return await reader.recommendations(args.customer_id, args.k, not args.include_bought)
        query = reader.also_bought if args.items_command == "also-bought" else reader.viewed_then_bought
        return await query(args.sku, args.measure, args.k, args.min_support)

    try:
        result = _with_redis(settings, run)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:  # rebuild sets it
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0
    for row in result["items"]:
        detail = f"because {', '.join(row['because'])}" if row.get("because") else row.get("count", "")
        print(f"{row['sku']:24} {row['score']:>14.6f}  {row.get('source', '')} {detail}")
    return 0


async def _rebuild_items(client, customers, settings: Settings, args: argparse.Namespace) -> dict:
    from online_models.customer_profile import segment_label
    from streams.item_rebuild import count_history, replace_item_keys
    from streams.replay import ColumnMapping, numbered_rows, read_rows, rows_to_events

    records = []
    for file in args.files:
        records += rows_to_events(numbered_rows(Path(file)), ColumnMapping()) if args.order_lines else \
            [(row["topic"], row["event"]) for row in read_rows(Path(file))]
    sketches, _ = await customers.population()
    counts, invalid = count_history(records, settings, lambda state: segment_label(state, sketches))
    keys = await replace_item_keys(client, settings.key_space(), counts, settings)
    return {"events": len(records), "invalid": invalid, "baskets": sum(c.baskets for c in counts.values()),
            "keys_written": keys}


def _create_topics(args: argparse.Namespace) -> int:
    import asyncio

    from streams.embedded import create_topics
    from streams.topics import topic_specs

    settings = Settings.from_env()
    specs = topic_specs(settings)
    asyncio.run(create_topics(settings.kafka_bootstrap, specs))
    for spec in specs:
        print(f"{spec.name} ({spec.partitions} partitions)")
    return 0


def _api_key(args: argparse.Namespace) -> int:
    """A new key on stdout's first line, its keys-file line on the second (only the hash is kept)."""
    from api.auth import hash_key, new_key

    if not all(c.isalnum() or c in "-_." for c in args.name):
        print("--name: letters, digits, '-', '_' and '.' only", file=sys.stderr)
        return 2
    key = new_key()
    print(key)
    print(f"{hash_key(key)}:{args.role}" + (f":{args.name}" if args.name else ""))
    return 0


def _api(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    settings.key_ring()  # a bad key or keys file stops here, in one line, not in a server's traceback
    from api.server import serve

    serve(settings)
    return 0


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def build_parser() -> argparse.ArgumentParser:
    from schemas.money import CURRENCY_EXPONENTS

    parser = argparse.ArgumentParser(prog="crmstream", description="Live customer intelligence from webshop events.")
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="run a stream worker (scale by starting more)")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(run=_worker, trainers_only=False)

    trainers = commands.add_parser("trainers", help="run the churn and segment trainers only (a worker starts "
                                                    "them itself unless CRM_TRAINERS=inline)")
    trainers.add_argument("--loglevel", default="info")
    trainers.set_defaults(run=_worker, trainers_only=True)

    api = commands.add_parser("api", help="serve the HTTP API (reads Redis only)")
    api.set_defaults(run=_api)

    simulate = commands.add_parser("simulate", help="generate webshop traffic with known ground truth")
    simulate.add_argument("--customers", type=int, default=1000)
    simulate.add_argument("--days", type=int, default=365, help="days of event time")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    simulate.add_argument("--out", default=None, help="write JSONL here instead of sending to Kafka")
    simulate.add_argument("--start", default=None, help="first day (YYYY-MM-DD, default: DAYS days ago)")
    simulate.add_argument("--profile", choices=("dense", "sparse"), default="dense",
                          help="dense: every customer shops regularly; sparse: a real shop's history (most buy once "
                               "or twice, arrive in cohorts, browse little)")
    simulate.set_defaults(run=_simulate)

    demo = commands.add_parser("demo", help="embedded broker + Redis + worker + API + simulator on this machine")
    demo.add_argument("--customers", type=int, default=2000)
    demo.add_argument("--days", type=int, default=365)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--rate", type=float, default=2000.0, help="simulator events per second")
    demo.add_argument("--workers", type=int, default=1)
    demo.add_argument("--duration", type=float, default=None, help="stop by itself after this many seconds")
    demo.set_defaults(run=_demo)

    replay = commands.add_parser(
        "replay", help="backfill history from a CSV/JSONL file of order lines",
        description="Backfill history from a CSV/JSONL file of order lines. A line's money is its amount column "
                    "(--amount) or quantity x unit price, exact, rounded once to the currency's minor unit, half to "
                    "even. Lines that cannot be read are listed (first example per reason); if there are more than "
                    "--max-skipped, nothing is sent and the exit status is 1.")
    replay.add_argument("file")
    replay.add_argument("--customer", default="customer_id", help="column of the customer id")
    replay.add_argument("--time", default="ts", help="column of the order time")
    replay.add_argument("--order", default="order_id",
                        help="column of the order id; '' = one order per customer and time")
    replay.add_argument("--sku", default="sku", help="column of the product id; '' = no product column")
    replay.add_argument("--qty", default="qty", help="column of the quantity (negative = returned)")
    replay.add_argument("--price", default="unit_price", help="column of the unit price (any number of decimals)")
    replay.add_argument("--amount", default=None, help="column of the line total (wins over --price)")
    replay.add_argument("--category", default=None, help="column of the product category (optional)")
    replay.add_argument("--time-format", default=None,
                        help="strptime format of the time column, or epoch_s / epoch_ms for integer times "
                             "(default: ISO 8601, or epoch milliseconds)")
    replay.add_argument("--timezone", default="UTC", help="zone of times without an offset")
    replay.add_argument("--currency", default="EUR", choices=sorted(CURRENCY_EXPONENTS), metavar="CURRENCY",
                        help="ISO 4217 code of the money columns (default EUR)")
    replay.add_argument("--max-skipped", type=_non_negative_int, default=0,
                        help="lines that may be skipped before the replay refuses to send (default 0)")
    replay.add_argument("--dry-run", action="store_true", help="read and check the file, send nothing")
    replay.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    replay.set_defaults(run=_replay)

    customer = commands.add_parser("customer", help="a customer's card (RFM, segment, CLV, engagement) from Redis")
    customer.add_argument("id")
    customer.add_argument("--json", action="store_true")
    customer.set_defaults(run=_customer)

    kpis = commands.add_parser("kpis", help="KPIs per event-time bucket from Redis")
    kpis.add_argument("--by", choices=["day", "week", "month"], default="week")
    kpis.add_argument("--last", type=int, default=12, help="number of buckets")
    kpis.add_argument("--segment", default=None, help="one named RFM segment (e.g. Champions) instead of all")
    kpis.add_argument("--json", action="store_true")
    kpis.set_defaults(run=_kpis)

    segments = commands.add_parser("segments", help="behaviour segments: profiles, sizes, revenue, churn, migrations")
    segments.add_argument("--day", action="append", default=[], metavar="YYYY-MM-DD", type=_iso_day,
                          help="migrations of this event-time day only (repeatable); default: all days")
    segments.add_argument("--json", action="store_true")
    segments.set_defaults(run=_segments)

    alerts = commands.add_parser("alerts", help="newest alerts (customer and aggregate), or acknowledge one")
    alerts.add_argument("--limit", type=int, default=20)
    alerts.add_argument("--kind", choices=["customer", "aggregate"], default=None)
    alerts.add_argument("--status", choices=["open", "acknowledged"], default=None)
    alerts.add_argument("--ack", metavar="ALERT_ID", default=None, help="acknowledge this alert")
    alerts.add_argument("--by", default="cli", help="who acknowledges (with --ack)")
    alerts.add_argument("--note", default="", help="a note with the acknowledgement")
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(run=_alerts)

    also = commands.add_parser("also-bought", help="items bought in the same orders as SKU")
    also.add_argument("sku")
    also.add_argument("--by", dest="measure", choices=["llr", "cosine", "lift", "count"], default="llr")
    also.add_argument("--limit", dest="k", type=int, default=10)
    also.add_argument("--min-support", type=float, default=None, help="default: CRM_ITEM_MIN_SUPPORT")
    also.add_argument("--json", action="store_true")
    also.set_defaults(run=_items, items_command="also-bought")

    recommend_top = commands.add_parser("recommend", help="what a customer should see next, and why")
    recommend_top.add_argument("customer_id")
    recommend_top.add_argument("--limit", dest="k", type=int, default=10)
    recommend_top.add_argument("--include-bought", action="store_true", help="do not leave out what they bought")
    recommend_top.add_argument("--json", action="store_true")
    recommend_top.set_defaults(run=_items, items_command="recommend")

    top = commands.add_parser("top", help="customers of a churn band, most valuable first (the index's order)")
    top.add_argument("--band", choices=["low", "medium", "high"], default=None)
    top.add_argument("--segment", type=int, default=None, help="behaviour segment id")
    top.add_argument("--sort", choices=["value", "churn"], default="value")
    top.add_argument("--limit", type=int, default=20)
    top.add_argument("--json", action="store_true")
    top.set_defaults(run=_top)

    items = commands.add_parser("items", help="item co-occurrence and recommendations from Redis")
    item_commands = items.add_subparsers(dest="items_command", required=True)
    for name, help_text in (("also-bought", "items bought in the same orders as SKU"),
                            ("viewed-then-bought", "items bought after a view of SKU")):
        related = item_commands.add_parser(name, help=help_text)
        related.add_argument("sku")
        related.add_argument("--measure", choices=["llr", "cosine", "lift", "count"], default="llr")
        related.add_argument("--min-support", type=float, default=None, help="default: CRM_ITEM_MIN_SUPPORT")
    recommend = item_commands.add_parser("recommend", help="what a customer should see next")
    recommend.add_argument("customer_id")
    recommend.add_argument("--include-bought", action="store_true", help="do not leave out what they bought")
    for sub in item_commands.choices.values():
        sub.add_argument("-k", type=int, default=10, help="how many items")
        sub.add_argument("--json", action="store_true")
    rebuild = item_commands.add_parser(
        "rebuild", help="recompute every item:* key from history files (stop the workers first)")
    rebuild.add_argument("files", nargs="+", help='JSONL of {"topic", "event"} lines (what `simulate --out` writes)')
    rebuild.add_argument("--order-lines", action="store_true",
                         help="the files are order lines (the `replay` format, default columns) instead")
    rebuild.set_defaults(json=True)
    items.set_defaults(run=_items)

    api_key = commands.add_parser("api-key", help="make an API key: the key, then the line for CRM_API_KEYS_FILE")
    api_key.add_argument("--role", choices=["support", "analyst", "admin"], required=True)
    api_key.add_argument("--name", default="", help="what logs and acknowledgements call the key")
    api_key.set_defaults(run=_api_key)

    topics = commands.add_parser("create-topics", help="create the pipeline's topics on CRM_KAFKA_BOOTSTRAP")
    topics.set_defaults(run=_create_topics)

    schemas = commands.add_parser("schemas", help="write the JSON Schema files of the event contract")
    schemas.add_argument("--out", default="schemas/json")
    schemas.set_defaults(run=_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("api", "worker"):  # uvicorn and Faust's worker log as CRM_LOG_FORMAT says
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except ConfigError as exc:  # an operator's mistake: one line naming the variable, no traceback
        print(f"crmstream {args.command}: configuration: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
