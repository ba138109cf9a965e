"""Redis connections and key naming.

Every key starts with the deployment's namespace, and keys that one script touches share a hash tag
(`{...}`), so the layout works on Redis Cluster as it does on one server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from shared.settings import ServiceSettings


class HiredisCommands:
    """What Broadsheet's Redis connections change in redis-py's asyncio connection: commands are packed in C, a
    reply that has already arrived is taken without arming a read timeout, and a write never loses a
    cancellation (see `send_packed_command`).

    The consumers send their Redis work as pipelines of hundreds of commands per batch (about five per comment,
    three per draft). redis-py's asyncio connection packs every argument in Python and wraps every reply read in
    its own `asyncio.timeout`, even when the reply is already in the buffer; together that was the largest single
    cost of moderating a comment. redis-py's sync client already packs with `hiredis.pack_command`, which writes
    the same bytes (tests/unit/test_redis_packing.py compares them); a read that has to wait for the server
    still runs under `socket_timeout`, so a hung Redis still fails the call instead of blocking a consumer.
    Both paths lean on redis-py internals (the hiredis parser's reader) and fall back to redis-py's own code
    whenever they do not hold: a parser other than hiredis, a disconnected parser, a reply not yet here.
    """

    _parser: Any
    health_check_interval: float
    next_health_check: float

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        command = args[0]
        if isinstance(command, str) and " " in command:
            args = (*command.encode().split(), *args[1:])
        elif isinstance(command, bytes) and b" " in command:
            args = (*command.split(), *args[1:])
        try:
            return [hiredis.pack_command(cast(Any, args))]  # its stub types a tuple of one item
        except TypeError:
            pass
        try:  # hiredis takes bytes, str, int, float and memoryview; redis-py also takes a bytearray
            return [hiredis.pack_command(cast(Any, tuple(bytes(a) if isinstance(a, bytearray) else a for a in args)))]
        except TypeError as exc:
            raise DataError(str(exc)) from exc

    def pack_commands(self, commands: Iterable[Iterable[EncodableT]]) -> list[bytes]:
        """A pipeline as one buffer: its commands packed by hiredis (through `pack_command` when a command needs its
        argument handling) and joined once (redis-py measures and regroups every chunk in Python, to keep large
        values apart, which one `bytes.join` does not need)."""
        pack = hiredis.pack_command
        chunks: list[bytes] = []
        for command in commands:
            # A one-word command as a tuple of what hiredis takes goes straight to C (0.43 µs a command against
            # 0.70 µs through `pack_command`, whose argument handling each one would otherwise pay).
            if type(command) is tuple and type(command[0]) is str and " " not in command[0]:
                try:
                    chunks.append(pack(command))
                    continue
                except TypeError:
                    pass
            chunks.extend(self.pack_command(*command))
        return [b"".join(chunks)]

    async def read_replies(self, count: int) -> list[Any]:
        """The next `count` replies in order, for a pipeline: an error reply is returned as its exception, not
        raised, and the rest are read all the same (the server has sent them).

        Replies already buffered are taken straight from the hiredis reader in one loop, with the checks
        `read_response` makes; the loop waits on the socket through `read_response` only when a reply has not
        arrived yet, so a pipeline's hundreds of replies cost one pass, not two coroutine calls each."""
        parser: Any = self._parser
        replies: list[Any] = []
        fast = type(parser) is _AsyncHiredisParser
        while len(replies) < count:
            reply = parser._reader.gets() if fast and parser._connected else NOT_ENOUGH_DATA
            if reply is NOT_ENOUGH_DATA:
                try:
                    reply = await self.read_response()
                except ResponseError as error:
                    reply = error
            elif parser._hiredis_PushNotificationType is not None and isinstance(
                reply, parser._hiredis_PushNotificationType
            ):
                await parser.handle_push_response(reply)
                continue
            elif isinstance(reply, RedisConnectionError) or (
                isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError)
            ):
                await self._buffered(reply, True)  # raises, as a reply read one by one would
            replies.append(reply)
        if replies and self.health_check_interval:
            self.next_health_check = asyncio.get_running_loop().time() + self.health_check_interval
        return replies

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (redis-py's signature)
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        parser: Any = self._parser
        if timeout is None and not push_request and type(parser) is _AsyncHiredisParser and parser._connected:
            reader: Any = parser._reader
            reply = reader.gets(False) if disable_decoding else reader.gets()
            if reply is not NOT_ENOUGH_DATA:  # a whole reply was buffered, and it has now been taken
                if parser._hiredis_PushNotificationType is not None and isinstance(
                    reply, parser._hiredis_PushNotificationType
                ):
                    await parser.handle_push_response(reply)
                    return await self.read_response(disable_decoding, disconnect_on_error=disconnect_on_error)
                return await self._buffered(reply, disconnect_on_error)
        return await super().read_response(  # type: ignore[misc]
            disable_decoding, timeout, disconnect_on_error=disconnect_on_error, push_request=push_request
        )

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        """redis-py's, with the write bounded by `asyncio.timeout` instead of `asyncio.wait_for`.

        On Python 3.11 `wait_for` returns normally when the caller is cancelled just as the write completes,
        and the cancellation is lost: measured, a task cancelled during a stream of commands carried on in
        about four cases out of ten, which kept a stopping publisher's renderer alive through its grace period.
        """
        connection = cast(Connection, self)
        if not connection.is_connected:
            await connection.connect_check_health(check_health=False)
        if check_health:
            await connection.check_health()  # type: ignore[no-untyped-call]
        if isinstance(command, str):
            command = command.encode()
        chunks = [command] if isinstance(command, bytes) else command
        try:
            async with asyncio.timeout(connection.socket_timeout or None):
                await connection._send_packed_command(chunks)
        except TimeoutError:
            await connection.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await connection.disconnect(nowait=True)
            code, message = ("UNKNOWN", exc.args[0]) if len(exc.args) == 1 else (exc.args[0], exc.args[1])
            raise RedisConnectionError(f"Error {code} while writing to socket. {message}.") from exc
        except BaseException:
            # a write cut short (cancelled) leaves the stream in an unknown state: never reuse it
            await connection.disconnect(nowait=True)
            raise

    async def _buffered(self, reply: Any, disconnect_on_error: bool) -> Any:
        """The checks redis-py's hiredis parser and connection make on a reply, in the same order."""
        if isinstance(reply, RedisConnectionError) or (
            isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError)
        ):
            if disconnect_on_error:
                await cast(Connection, self).disconnect(nowait=True)
            raise reply if isinstance(reply, RedisConnectionError) else reply[0]
        if self.health_check_interval:
            self.next_health_check = asyncio.get_running_loop().time() + self.health_check_interval
        if isinstance(reply, ResponseError):
            raise reply from None
        return reply


class HiredisConnection(HiredisCommands, Connection):
    pass


class HiredisSSLConnection(HiredisCommands, SSLConnection):
    pass


class HiredisUnixConnection(HiredisCommands, UnixDomainSocketConnection):
    pass


HIREDIS_CONNECTIONS: dict[type[Any], type[Any]] = {
    Connection: HiredisConnection,
    SSLConnection: HiredisSSLConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
}


def make_redis(settings: ServiceSettings, *, pool_size: int = 32) -> aioredis.Redis:
    # A blocking pool: a burst of requests waits a moment for a connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=pool_size,
        timeout=5,
        health_check_interval=15,
        socket_connect_timeout=3,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[ConnectionError, TimeoutError],
    )
    # The URL picks TCP, TLS (rediss://) or a Unix socket; each gets its hiredis-packing variant.
    pool.connection_class = HIREDIS_CONNECTIONS.get(pool.connection_class, pool.connection_class)
    return aioredis.Redis(connection_pool=pool, decode_responses=False)


RELEASE_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


async def release_lock(client: aioredis.Redis, key: str, token: str) -> bool:
    """Delete a lock taken with `SET key token NX EX …` only if it is still ours: past its expiry another process
    may hold it, and deleting that one would let a third in beside it."""
    return bool(await client.eval(RELEASE_LOCK, 1, key, token))


async def ensure_built(
    client: aioredis.Redis, marker: str, lock: str, rebuild: Callable[[], Awaitable[object]], *,
    lock_seconds: int, wait_seconds: float, what: str,
) -> None:
    """Return once `marker` exists; run `rebuild` first when it does not (it sets the marker when done). One process
    rebuilds, under `lock`; the others wait for it as long as its lock may live."""
    if await client.exists(marker):
        return
    token = uuid.uuid4().hex
    if await client.set(lock, token, nx=True, ex=lock_seconds):
        try:
            await rebuild()
        finally:
            await release_lock(client, lock, token)
        return
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while not await client.exists(marker):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} is being rebuilt by another replica")
        await asyncio.sleep(0.2)


def tagged(namespace: str, area: str, entity: str, *parts: str) -> str:
    """`bs:pub:{guid}:state` — the braces make every key of one entity land on one cluster slot."""
    suffix = ":".join(parts)
    return f"{namespace}:{area}:{{{entity}}}" + (f":{suffix}" if suffix else "")


async def unlink_matching(client: aioredis.Redis, pattern: str, *, per_call: int = 1000) -> int:
    """Remove every key that matches `pattern`, `per_call` keys per UNLINK (a namespace can hold millions: one
    command per key is a round trip each). Keys written meanwhile may stay; SCAN still visits every key that
    was there throughout, deletions or not. Returns how many were removed."""
    removed = 0
    doomed: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=per_call):
        doomed.append(key)
        if len(doomed) >= per_call:
            removed += await client.unlink(*doomed)
            doomed = []
    if doomed:
        removed += await client.unlink(*doomed)
    return removed


async def redis_ready(client: aioredis.Redis) -> tuple[bool, str]:
    pong = await client.ping()
    return bool(pong), "redis ok"


def pairs(reply: Any) -> dict[bytes, bytes]:
    """A HGETALL reply as a dict: RESP2 answers a flat list of field, value, field, value."""
    if isinstance(reply, dict):
        return cast(dict[bytes, bytes], reply)
    return dict(zip(reply[::2], reply[1::2], strict=True))


class CommandBatch:
    """Redis commands sent in one write and answered in order: a pipeline without redis-py's per-command work.

    A consumer's batch costs a few Redis commands per message, hundreds per round trip. redis-py's pipeline
    queues each command through its command methods, applies a response callback to each reply, and before
    every execution with a script asks the server whether its scripts exist (one more round trip). Measured
    on a batch of 500 HGETs and 500 script calls, that is 8–9 µs of client CPU per command; sending the same
    commands here costs about 3. Replies come back as the server sends them (RESP2 through hiredis: bytes,
    ints, None, lists); `reply` turns one into what its reader wants.

    A script is called by its SHA. Redis forgets scripts when it restarts or is flushed; a call that finds
    its script gone did nothing, so the script is loaded and those calls are sent again, in their order. As
    in a pipeline, the replies are all read before the first error reply is raised, and a connection error
    or timeout sends the whole batch again on a new connection (the client's retry policy): every batch
    Broadsheet sends is safe to repeat, since its writes are absolute values or fenced by version.
    """

    def __init__(self) -> None:
        self._commands: list[tuple[EncodableT, ...]] = []
        self._readers: list[Callable[[Any], Any] | None] = []
        self._scripts: dict[int, AsyncScript] = {}

    def __len__(self) -> int:
        return len(self._commands)

    def command(self, *args: EncodableT, reply: Callable[[Any], Any] | None = None) -> None:
        self._commands.append(args)
        self._readers.append(reply)

    def script(self, script: AsyncScript, keys: Sequence[EncodableT], args: Sequence[EncodableT]) -> None:
        self._scripts[len(self._commands)] = script
        self.command("EVALSHA", script.sha, len(keys), *keys, *args)

    async def execute(self, client: aioredis.Redis) -> list[Any]:
        if not self._commands:
            return []
        pool = client.connection_pool
        connection: Any = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            replies = await connection.retry.call_with_retry(
                lambda: self._exchange(connection, self._commands),
                lambda _error: connection.disconnect(),
            )
            forgotten = [i for i, answer in enumerate(replies) if isinstance(answer, NoScriptError)]
            if forgotten:
                for script in {id(self._scripts[i]): self._scripts[i] for i in forgotten}.values():
                    await connection.send_command("SCRIPT", "LOAD", script.script)
                    await connection.read_response()
                again = await self._exchange(connection, [self._commands[i] for i in forgotten])
                for i, answer in zip(forgotten, again, strict=True):
                    replies[i] = answer
        except BaseException:
            # Cut short (cancelled, or failed for good) with replies maybe still on their way: never reuse it.
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)
        for number, answer in enumerate(replies):
            if isinstance(answer, ResponseError):
                command = " ".join(str(part)[:40] for part in self._commands[number][:3])
                answer.args = (f"command #{number + 1} ({command}) of a batch failed: {answer}", *answer.args[1:])
                raise answer
        return [answer if read is None else read(answer) for answer, read in zip(replies, self._readers, strict=True)]

    @staticmethod
    async def _exchange(connection: Any, commands: Sequence[tuple[EncodableT, ...]]) -> list[Any]:
        await connection.send_packed_command(connection.pack_commands(commands))
        if isinstance(connection, HiredisCommands):
            return await connection.read_replies(len(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:  # the server went on with the rest: so does the reading
                replies.append(error)
        return replies


async def hgetall(client: aioredis.Redis, key: str) -> dict[bytes, bytes]:
    """HGETALL typed for a client without `decode_responses` (redis-py types both modes as one)."""
    result = await client.hgetall(key)
    return cast(dict[bytes, bytes], result)


async def get_bytes(client: aioredis.Redis, key: str) -> bytes | None:
    return cast(bytes | None, await client.get(key))
