#!/usr/bin/env python3
"""Turns keyledger's expiry warnings into e-mails or chat messages (nats-py): a durable JetStream
pull consumer on the public stream, filtered to ApiKeyExpiring and ExternalKeyExpiring.

keyledger announces each key once per horizon (30, 7 and 1 days before expiry by default; see
`vault.expiry_warning_days` in docs/operations.md). This example is not part of keyledger: adapt
who gets told and how. It is durable (a restart continues after the last acknowledged event) and
acknowledges an event only after the message was sent, so a failed send is retried.

    scripts/python-deps.sh
    # print what would be sent:
    .venv/bin/python docs/examples/expiry-notifier.py --url nats://127.0.0.1:4222 --dry-run
    # mail the owner (<user>@<mail domain>) through an SMTP relay:
    .venv/bin/python docs/examples/expiry-notifier.py --smtp-host mail.example.org \\
        --mail-from keyledger@example.org --mail-domain example.org
    # post to a Slack/Mattermost-style incoming webhook:
    .venv/bin/python docs/examples/expiry-notifier.py --webhook https://chat.example.org/hooks/abc
"""

import argparse
import asyncio
import json
import os
import smtplib
import sys
import urllib.request
from email.message import EmailMessage

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

EXPIRING = ("ApiKeyExpiring", "ExternalKeyExpiring")


def describe(event: dict) -> tuple[str, str]:
    """The subject line and the text of the notice for one warning."""
    data = event["data"]
    days = data["horizon_days"]
    within = "1 day" if days == 1 else f"{days} days"
    if event["type"] == "ApiKeyExpiring":
        what = f"Your keyledger API key {data['key']}"
        fix = "Roll it (`keyledger keys roll`) or create a new one before then."
    else:
        what = f"Your stored {data['provider']} credential {data['key']}"
        fix = "Rotate it (`keyledger external rotate`) or store a new one before then."
    subject = f"[keyledger] a key of yours expires within {within}"
    text = f"{what} expires at {data['expires_at']} (within {within}).\n{fix}\n"
    return subject, text


def send(args: argparse.Namespace, event: dict) -> None:
    """Sends one notice; raises when it could not be sent (the event is then not acknowledged)."""
    owner = event["data"]["owner"]
    subject, text = describe(event)
    if args.dry_run:
        print(f"to {owner}: {subject}\n{text}", flush=True)
        return
    if args.webhook:
        body = json.dumps({"text": f"@{owner} {subject}\n{text}"}).encode()
        request = urllib.request.Request(args.webhook, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    if args.smtp_host:
        message = EmailMessage()
        message["From"] = args.mail_from
        message["To"] = f"{owner}@{args.mail_domain}"
        message["Subject"] = subject
        message.set_content(text)
        with smtplib.SMTP(args.smtp_host, args.smtp_port, timeout=10) as smtp:
            smtp.send_message(message)


async def run(args: argparse.Namespace) -> int:
    options = {"servers": [args.url]}
    if args.token:
        options["token"] = args.token
    if args.creds:
        options["user_credentials"] = args.creds
    nc = await nats.connect(**options)
    js = nc.jetstream()
    subscription = await js.pull_subscribe(
        f"{args.prefix}.*.expiring",
        durable=args.durable,
        stream=args.stream,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL),
    )
    sent = 0
    try:
        while args.count == 0 or sent < args.count:
            try:
                messages = await subscription.fetch(batch=20, timeout=5)
            except NatsTimeout:
                continue
            for message in messages:
                event = json.loads(message.data)
                if event["type"] not in EXPIRING:
                    await message.ack()
                    continue
                try:
                    send(args, event)
                except Exception as error:  # noqa: BLE001 - any failure: try again later
                    print(f"could not notify for event {event['id']}: {error}", file=sys.stderr, flush=True)
                    await message.nak(delay=60)
                    continue
                await message.ack()
                sent += 1
    finally:
        await nc.drain()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--stream", default="KEYLEDGER")
    parser.add_argument("--prefix", default="keyledger.events", help="the server's nats.subject_prefix")
    parser.add_argument("--durable", default="keyledger-expiry-notifier")
    parser.add_argument("--token", default=os.environ.get("NATS_TOKEN"))
    parser.add_argument("--creds", default=os.environ.get("NATS_CREDS"), help="a NATS .creds file")
    parser.add_argument("--dry-run", action="store_true", help="print the notices instead of sending them")
    parser.add_argument("--count", type=int, default=0, help="exit after this many notices (0: run until stopped)")
    parser.add_argument("--webhook", help="an incoming-webhook URL taking {\"text\": ...}")
    parser.add_argument("--smtp-host")
    parser.add_argument("--smtp-port", type=int, default=25)
    parser.add_argument("--mail-from", default="keyledger@localhost")
    parser.add_argument("--mail-domain", default="localhost", help="owners are mailed at <user>@<domain>")
    args = parser.parse_args()
    if not (args.dry_run or args.webhook or args.smtp_host):
        parser.error("choose --dry-run, --webhook or --smtp-host")
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
