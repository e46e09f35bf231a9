"""The ASGI bridge on a real socket, with a Starlette app of its own: streamed answers (chunked,
with a length, close-delimited for HTTP/1.0), HEAD, apps that fail before or during an answer,
and a client that reads slower than the app writes."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvloop
from rawhttp import connect, read_answers, read_until_closed, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from beaconlake.serve.http.server import HttpServer, Limits

CHUNK = b"z" * 65536


async def stream(request: Request) -> Response:
    async def parts():
        for i in range(int(request.query_params.get("n", "3"))):
            yield f"part {i};".encode()
    headers = {"content-length": request.query_params["len"]} if "len" in request.query_params else {}
    return StreamingResponse(parts(), media_type="text/plain", headers=headers)


async def big(request: Request) -> Response:
    async def parts():
        for _ in range(64):  # 4 MiB: far over the transport's buffer
            yield CHUNK
    return StreamingResponse(parts(), media_type="application/octet-stream")


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"size": len(body), "method": request.method, "path": request.url.path,
                         "query": request.url.query, "cookie": request.headers.get("cookie")})


async def fails(request: Request) -> Response:
    raise RuntimeError("boom")


async def fails_mid_stream(request: Request) -> Response:
    async def parts():
        yield b"first;"
        raise RuntimeError("boom mid-stream")
    return StreamingResponse(parts())


APP = Starlette(routes=[Route("/stream", stream), Route("/big", big), Route("/echo", echo, methods=["GET", "POST"]),
                        Route("/fails", fails), Route("/fails-mid-stream", fails_mid_stream)])


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    sock = socket.create_server(("127.0.0.1", 0))
    ready = threading.Event()
    stop: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        limits = Limits(keepalive_idle_secs=5, header_read_timeout_secs=10, body_read_timeout_secs=10,
                        max_header_bytes=16384, max_body_bytes=100_000, max_connections=100, max_drain_bytes=1 << 20,
                        drain_timeout_secs=2, send_timeout_secs=5, retry_after_secs=1, shutdown_timeout_secs=1)
        server = HttpServer({}, APP, limits)
        await server.start(sock)
        stop.append(asyncio.get_running_loop())
        ready.set()
        while True:
            await asyncio.sleep(3600)

    thread = threading.Thread(target=lambda: uvloop.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield sock.getsockname()[1]


def test_streamed_answer_is_chunked(port):
    r = httpx.get(f"http://127.0.0.1:{port}/stream?n=4")
    assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
    assert r.text == "part 0;part 1;part 2;part 3;"


def test_streamed_answer_with_its_own_length_is_not_chunked(port):
    r = httpx.get(f"http://127.0.0.1:{port}/stream?n=2&len=14")
    assert r.status_code == 200 and "transfer-encoding" not in r.headers and r.text == "part 0;part 1;"


def test_streamed_answer_to_http_10_ends_with_the_connection(port):
    sock = connect(port)
    sock.sendall(request("GET", "/stream?n=3", version="1.0"))
    got, closed_after = read_until_closed(sock, 5)
    head, body = got.split(b"\r\n\r\n", 1)
    assert closed_after is not None and b"transfer-encoding" not in head.lower() and body == b"part 0;part 1;part 2;"


def test_head_of_a_streamed_answer_has_no_body(port):
    sock = connect(port)
    sock.sendall(request("HEAD", "/stream") + request("GET", "/echo"))
    time.sleep(0.3)
    got = sock.recv(65536)
    first, rest = got.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 200 ") and rest.startswith(b"HTTP/1.1 200 ")


def test_a_slow_reader_gets_every_byte_of_a_big_stream(port):
    sock = connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.sendall(request("GET", "/big"))
    time.sleep(0.5)  # the app must wait for the client, not buffer 4 MiB
    [answer] = read_answers(sock, 1, timeout=20)
    assert answer.status == 200 and answer.body == CHUNK * 64


def test_request_parts_reach_the_app(port):
    sock = connect(port)
    sock.sendall(request("POST", "/ech%6F?a=%20", b"x" * 5000))  # the ASGI path is percent-decoded
    [answer] = read_answers(sock, 1)
    assert answer.body == b'{"size":5000,"method":"POST","path":"/echo","query":"a=%20","cookie":null}'
    sock = connect(port)
    sock.sendall(request("POST", "/echo?a=1", b"hello", {"cookie": "a=1"}).replace(b"\r\n\r\n", b"\r\nCookie: b=2\r\n\r\n"))
    [answer] = read_answers(sock, 1)
    assert answer.status == 200
    assert answer.body == b'{"size":5,"method":"POST","path":"/echo","query":"a=1","cookie":"a=1; b=2"}'


def test_body_over_the_limit_is_413_before_the_app(port):
    r = httpx.post(f"http://127.0.0.1:{port}/echo", content=b"x" * 200_000)
    assert r.status_code == 413 and r.json()["reason"] == "too_large"


def test_an_app_that_fails_before_answering_gives_500_and_the_connection_goes_on(port):
    sock = connect(port)
    sock.sendall(request("GET", "/fails") + request("GET", "/echo"))
    answers = read_answers(sock, 2)
    assert [a.status for a in answers] == [500, 200]


def test_an_app_that_fails_mid_stream_has_its_connection_cut(port):
    sock = connect(port)
    sock.sendall(request("GET", "/fails-mid-stream"))
    got, closed_after = read_until_closed(sock, 5)
    assert closed_after is not None and got.startswith(b"HTTP/1.1 200 ") and b"first;" in got
    assert not got.endswith(b"0\r\n\r\n")  # no terminating chunk: the client can tell it is cut short
