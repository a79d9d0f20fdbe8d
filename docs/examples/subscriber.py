#!/usr/bin/env python3
"""A keyledger event subscriber in Python (nats-py): a durable JetStream pull consumer with
explicit acks on the public stream KEYLEDGER.

Each message is one JSON object {id, seq, type, time, subject, actor, data}; see docs/events.md
for every type and docs/events.schema.json for the JSON Schema. The consumer is durable: stop and
start it again and it continues after the last event it acknowledged.

    scripts/python-deps.sh
    .venv/bin/python docs/examples/subscriber.py --url nats://127.0.0.1:4222 --durable my-service

Prints one line per event: `<seq> <type> <subject> <actor> <nats subject>`.
"""

import argparse
import asyncio
import json
import os
import sys
import time

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy


def handle(event: dict, nats_subject: str) -> None:
    """React to one event. Make this idempotent on event["id"]: JetStream redelivers a message
    whose ack was lost."""
    data = event["data"]
    if event["type"] == "ApiKeyDeleted":
        pass  # e.g. evict data["key"] from a verification cache
    print(f'{event["seq"]} {event["type"]} {event["subject"]} {event["actor"]} {nats_subject}', flush=True)
    del data


async def run(args: argparse.Namespace) -> int:
    options = {"servers": [args.url]}
    if args.token:
        options["token"] = args.token
    if args.creds:
        options["user_credentials"] = args.creds
    nc = await nats.connect(**options)
    js = nc.jetstream()
    subscription = await js.pull_subscribe(
        args.subject,
        durable=args.durable,
        stream=args.stream,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL),
    )
    handled = 0
    last_event = time.monotonic()
    try:
        while args.count == 0 or handled < args.count:
            try:
                messages = await subscription.fetch(batch=100, timeout=1)
            except NatsTimeout:
                if args.idle and time.monotonic() - last_event > args.idle:
                    break
                continue
            for message in messages:
                event = json.loads(message.data)
                if event["seq"] >= args.from_seq:
                    handle(event, message.subject)
                    handled += 1
                await message.ack()
                last_event = time.monotonic()
                if args.count and handled >= args.count:
                    break
    finally:
        await nc.drain()
    return 0 if args.count == 0 or handled >= args.count else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--stream", default="KEYLEDGER")
    parser.add_argument("--subject", default="keyledger.events.>", help="e.g. keyledger.events.api_key.>")
    parser.add_argument("--durable", default="keyledger-example", help="the consumer's name on the server")
    parser.add_argument("--from-seq", type=int, default=0, help="skip (and ack) events before this log seq")
    parser.add_argument("--count", type=int, default=0, help="exit after this many events (0: run until stopped)")
    parser.add_argument("--idle", type=float, default=0, help="exit after this many seconds without events (0: never)")
    parser.add_argument("--token", default=os.environ.get("NATS_TOKEN"))
    parser.add_argument("--creds", default=os.environ.get("NATS_CREDS"), help="a NATS .creds file")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
