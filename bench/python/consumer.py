"""The RabbitMQ consumer our users write by hand today, for the benchmark in bench/README.md.

aio-pika, a pydantic model to validate each payload, manual acknowledgement after the output is
confirmed by the broker (publisher confirms), the same prefetch as Sluice. Reads `n` messages from
`bench-in`, uppercases `text`, publishes to `bench-out`, prints `rate <messages per second>`.

    pip install aio-pika pydantic
    python3 bench/python/consumer.py 20000
"""

import asyncio
import sys
import time

import aio_pika
from pydantic import BaseModel, ValidationError

URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
PREFETCH = 1024


class Event(BaseModel):
    id: int
    text: str


async def main(n: int) -> None:
    connection = await aio_pika.connect_robust(URL)
    async with connection:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=PREFETCH)
        publish = await connection.channel(publisher_confirms=True)
        queue = await consume.declare_queue("bench-in", passive=True)
        done = asyncio.Event()
        count = 0
        started = time.perf_counter()

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            try:
                event = Event.model_validate_json(message.body)
            except ValidationError:
                await message.reject(requeue=False)
                return
            event.text = event.text.upper()
            await publish.default_exchange.publish(
                aio_pika.Message(body=event.model_dump_json().encode()), routing_key="bench-out"
            )
            await message.ack()
            count += 1
            if count >= n:
                done.set()

        await queue.consume(handle)
        await done.wait()
        elapsed = time.perf_counter() - started
    print(f"rate {n / elapsed:.0f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
