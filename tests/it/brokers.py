"""Consumes what hookgate's broker destinations publish, with each broker's official Python client,
as docs/BROKERS.md shows. tests/it/brokers.rs runs it; each message is printed as one JSON line
{"headers": {...}, "content_type": ..., "body": ..., ...} so the test sees what a real consumer sees.

usage: brokers.py nats     URL STREAM SUBJECT COUNT
       brokers.py rabbitmq URL QUEUE COUNT
       brokers.py redis    URL STREAM COUNT
       brokers.py mqtt     URL TOPIC COUNT      (prints "ready" once subscribed)
"""
import asyncio
import json
import sys
import time
import urllib.parse

TIMEOUT = 20


def out(message):
    print(json.dumps(message), flush=True)


async def nats_consume(url, stream, subject, count):
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, stream=stream)
    got = 0
    deadline = time.monotonic() + TIMEOUT
    while got < count and time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(count - got, timeout=1)
        except nats.errors.TimeoutError:
            continue
        for msg in msgs:
            out({"subject": msg.subject, "headers": dict(msg.headers or {}), "body": msg.data.decode()})
            await msg.ack()
            got += 1
    await nc.close()


def rabbitmq(url, queue, count):
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    got = 0
    deadline = time.monotonic() + TIMEOUT
    while got < count and time.monotonic() < deadline:
        method, props, body = channel.basic_get(queue=queue, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        out({
            "routing_key": method.routing_key,
            "message_id": props.message_id,
            "delivery_mode": props.delivery_mode,
            "content_type": props.content_type,
            "headers": {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (props.headers or {}).items()},
            "body": body.decode(),
        })
        got += 1
    connection.close()


def redis_read(url, stream, count):
    import redis

    r = redis.Redis.from_url(url, decode_responses=True)
    deadline = time.monotonic() + TIMEOUT
    last = "0"
    got = 0
    while got < count and time.monotonic() < deadline:
        for _, entries in r.xread({stream: last}, count=count - got, block=1000) or []:
            for entry_id, fields in entries:
                out({"id": entry_id, **fields})
                last = entry_id
                got += 1


def mqtt(url, topic, count):
    import paho.mqtt.client as paho
    from paho.mqtt.properties import Properties  # noqa: F401 (what message.properties is)

    parts = urllib.parse.urlsplit(url)
    got = []

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(topic, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        print("ready", flush=True)

    def on_message(client, userdata, message):
        props = message.properties
        out({
            "topic": message.topic,
            "qos": message.qos,
            "content_type": getattr(props, "ContentType", None),
            "headers": dict(getattr(props, "UserProperty", [])),
            "body": message.payload.decode(),
        })
        got.append(1)

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(parts.hostname, parts.port or 1883)
    deadline = time.monotonic() + TIMEOUT
    while len(got) < count and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.disconnect()


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    if kind == "nats":
        asyncio.run(nats_consume(args[0], args[1], args[2], int(args[3])))
    elif kind == "rabbitmq":
        rabbitmq(args[0], args[1], int(args[2]))
    elif kind == "redis":
        redis_read(args[0], args[1], int(args[2]))
    elif kind == "mqtt":
        mqtt(args[0], args[1], int(args[2]))
    else:
        sys.exit(f"unknown broker {kind}")
