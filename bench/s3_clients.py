"""Object-storage clients for the S3 blob store: obstore against aiobotocore.

Each round uploads ``--mb`` MiB as a multipart upload (8 MiB parts, written 1 MiB at a time
as the gateway writes a file) and streams it back in 1 MiB chunks, against moto's S3
server, started here on loopback in its own process. Wall time is mostly the server's (moto
is Python); what the candidates differ in is the client's own CPU per MiB (this process's
CPU time, every thread), which is what a gateway pays. Rounds alternate the candidates.

aiobotocore is not a dependency of batchway: ``pip install aiobotocore`` into the venv for
this comparison (the script skips it, with a note, when it is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import obstore
from obstore.store import S3Store

MIB = 1 << 20
PART = 8 * MIB
Round = Callable[[str, str, int], Awaitable[tuple[float, float]]]


async def obstore_round(endpoint: str, bucket: str, size: int) -> tuple[float, float]:
    store = S3Store(
        bucket,
        endpoint=endpoint,
        region="us-east-1",
        access_key_id="x",
        secret_access_key="x",
        client_options={"allow_http": True},
    )
    data = os.urandom(MIB)
    started = time.process_time()
    async with obstore.open_writer_async(store, "blob", buffer_size=PART) as writer:
        for _ in range(size // MIB):
            await writer.write(data)
    uploaded = time.process_time()
    read = 0
    async for chunk in (await obstore.get_async(store, "blob")).stream(min_chunk_size=MIB):
        read += len(chunk)
    assert read == size
    return uploaded - started, time.process_time() - uploaded


async def aiobotocore_round(endpoint: str, bucket: str, size: int) -> tuple[float, float]:
    import aiobotocore.session  # type: ignore[import-not-found]

    session = aiobotocore.session.get_session()
    async with session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    ) as client:
        data = os.urandom(MIB)
        started = time.process_time()
        upload = await client.create_multipart_upload(Bucket=bucket, Key="blob")
        parts: list[dict[str, Any]] = []
        buffer = bytearray()
        for index in range(size // MIB):
            buffer += data
            if len(buffer) >= PART or index == size // MIB - 1:
                number = len(parts) + 1
                answer = await client.upload_part(
                    Bucket=bucket,
                    Key="blob",
                    UploadId=upload["UploadId"],
                    PartNumber=number,
                    Body=bytes(buffer),
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
                buffer.clear()
        await client.complete_multipart_upload(
            Bucket=bucket,
            Key="blob",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
        )
        uploaded = time.process_time()
        body = (await client.get_object(Bucket=bucket, Key="blob"))["Body"]
        read = 0
        async for chunk in body.iter_chunks(MIB):
            read += len(chunk)
        assert read == size
        return uploaded - started, time.process_time() - uploaded


def _moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{endpoint}/moto-api/")
            return process, endpoint
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("moto's server did not start")


async def main(args: argparse.Namespace) -> None:
    candidates: dict[str, Round] = {"obstore": obstore_round}
    try:
        import aiobotocore  # type: ignore[import-not-found]  # noqa: F401

        candidates["aiobotocore"] = aiobotocore_round
    except ImportError:
        print("aiobotocore is not installed: measuring obstore alone")
    process, endpoint = _moto()
    try:
        size = args.mb * MIB
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
        for round_number in range(args.rounds):
            for name, run in candidates.items():
                bucket = f"bench-{name}-{round_number}"
                httpx.put(f"{endpoint}/{bucket}")
                figures[name].append(await run(endpoint, bucket, size))
        print(f"{args.mb} MiB, {args.rounds} rounds, client CPU per MiB (median)")
        for name, runs in figures.items():
            up = statistics.median(u for u, _ in runs) / args.mb * 1e3
            down = statistics.median(d for _, d in runs) / args.mb * 1e3
            print(f"  {name:12} upload {up:6.2f} ms   download {down:6.2f} ms")
    finally:
        process.terminate()
        process.wait(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=64, help="MiB per round")
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
