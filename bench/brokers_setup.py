"""Makes (up) or removes (down) what bench/brokers.sh publishes to: a JetStream stream on TAG.>, a
durable RabbitMQ queue TAG (the default exchange routes its name to it), and the Redis stream
TAG:bench. MQTT needs nothing (a QoS 1 publish with no subscriber is acknowledged).

usage: brokers_setup.py up|down TAG NATS_URL AMQP_URL REDIS_URL
"""
import asyncio
import sys


async def nats_stream(up, tag, url):
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    name = tag.upper()
    if up:
        await js.add_stream(name=name, subjects=[f"{tag}.>"])
    else:
        try:
            await js.delete_stream(name)
        except Exception:
            pass
    await nc.close()


def main():
    action, tag, nats_url, amqp_url, redis_url = sys.argv[1:]
    up = action == "up"
    asyncio.run(nats_stream(up, tag, nats_url))

    import pika

    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    if up:
        ch.queue_declare(queue=tag, durable=True)
    else:
        ch.queue_delete(queue=tag)
    conn.close()

    import redis

    if not up:
        redis.Redis.from_url(redis_url).delete(f"{tag}:bench")


if __name__ == "__main__":
    main()
