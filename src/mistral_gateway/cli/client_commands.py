"""Client commands against a running gateway, through ``mistral_gateway.client`` (LowCodeAPI dialect):
``chat``, ``embed``, ``files upload|list|download|rm`` and ``models [list]`` (registered by cli/models.py).

Each takes ``--base-url`` (default ``$MISTRAL_GATEWAY_BASE_URL`` or ``http://127.0.0.1:8080``) and ``--token``
(default ``$MISTRAL_GATEWAY_TOKEN``, else ``<data-dir>/dev-token`` as written by ``serve``). Output is for people by
default and JSON with ``--json``; progress bars go to stderr, when it is a terminal or with ``--progress``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mistral_gateway.cli.common import add_location_args, bounded_int, settings_from
from mistral_gateway.protocol.files import MAX_PAGE

__all__ = ["add_client_args", "models_list", "register"]


def register(sub: Any) -> None:
    chat = sub.add_parser("chat", help="chat with a model on a running gateway")
    chat.add_argument("prompt", help="the user message ('-' reads it from stdin)")
    chat.add_argument("--model", default="mistral-small-latest")
    chat.add_argument("--system", help="a system message sent before the prompt")
    chat.add_argument("--max-tokens", type=bounded_int(0, 1_000_000))
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    add_client_args(chat)
    chat.set_defaults(func=_chat)

    embed = sub.add_parser("embed", help="embed texts on a running gateway")
    embed.add_argument("texts", nargs="+", metavar="TEXT")
    embed.add_argument("--model", default="mistral-embed")
    add_client_args(embed)
    embed.set_defaults(func=_embed)

    files = sub.add_parser("files", help="upload, list, download and delete files on a running gateway")
    fsub = files.add_subparsers(dest="files_command", required=True)
    upload = fsub.add_parser("upload", help="upload a file (streamed from disk)")
    upload.add_argument("path", type=Path)
    upload.add_argument("--purpose", default="fine-tune", help="fine-tune (default), batch, ocr, audio, ...")
    add_client_args(upload, progress=True)
    upload.set_defaults(func=_files_upload)
    lst = fsub.add_parser("list", help="list files")
    lst.add_argument("--purpose")
    lst.add_argument("--search")
    lst.add_argument("--page", type=bounded_int(0, MAX_PAGE))
    lst.add_argument("--page-size", type=bounded_int(1, 1000))
    add_client_args(lst)
    lst.set_defaults(func=_files_list)
    download = fsub.add_parser("download", help="download a file's content")
    download.add_argument("file_id")
    download.add_argument("-o", "--output", help="file or directory to write (default: its name, here; - : stdout)")
    add_client_args(download, progress=True)
    download.set_defaults(func=_files_download)
    rm = fsub.add_parser("rm", help="delete a file")
    rm.add_argument("file_id")
    add_client_args(rm)
    rm.set_defaults(func=_files_rm)


def add_client_args(parser: argparse.ArgumentParser, *, progress: bool = False) -> None:
    # SUPPRESS: a parent parser and its sub-command may both declare these without the child's default winning.
    parser.add_argument("--base-url", default=argparse.SUPPRESS,
                        help="gateway URL (default $MISTRAL_GATEWAY_BASE_URL or http://127.0.0.1:8080)")
    parser.add_argument("--token", default=argparse.SUPPRESS,
                        help="API token (default $MISTRAL_GATEWAY_TOKEN, else <data-dir>/dev-token)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    parser.add_argument("--retries", type=bounded_int(0, 100), default=argparse.SUPPRESS, metavar="N",
                        help="retries on 429/502/503/504 and connection failures (default 3)")
    if progress:
        parser.add_argument("--progress", action="store_true", default=argparse.SUPPRESS,
                            help="show a progress bar even when stderr is not a terminal")
    add_location_args(parser)


class CommandError(Exception):
    """A clean one-line failure of a client command."""


def _token(args: argparse.Namespace) -> str:
    token = getattr(args, "token", None) or os.environ.get("MISTRAL_GATEWAY_TOKEN")
    if token:
        return token
    dev_token = settings_from(args).data_dir / "dev-token"
    try:
        token = dev_token.read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise CommandError(f"no API token: pass --token, set MISTRAL_GATEWAY_TOKEN, or start the server once so "
                           f"that it writes {dev_token}")
    return token


def _run(args: argparse.Namespace, body: Callable[[Any], None]) -> int:
    from mistral_gateway.client import ApiConnectionError, ApiError, Client, ClientError, RetryPolicy

    retries = getattr(args, "retries", None)
    retry = RetryPolicy(max_retries=max(0, retries)) if retries is not None else None
    try:
        with Client(getattr(args, "base_url", None), _token(args), retry=retry) as client:
            body(client)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ApiConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"error: {exc.message} (HTTP {exc.status}, {exc.code})", file=sys.stderr)
        return 1
    except (ClientError, OSError) as exc:  # OSError: a file to upload or a download target
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _dump(value: Any) -> None:
    data = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    print(json.dumps(data, indent=2, ensure_ascii=False))


@contextmanager
def _progress(args: argparse.Namespace, label: str) -> Iterator[Any]:
    if not (getattr(args, "progress", False) or sys.stderr.isatty()):
        yield None
        return
    from mistral_gateway.client import ProgressBar

    bar = ProgressBar(label)
    try:
        yield bar
    finally:
        bar.close()


def _chat(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": prompt}]
    options = {k: v for k, v in {"max_tokens": args.max_tokens, "temperature": args.temperature}.items()
               if v is not None}

    def body(client: Any) -> None:
        if not args.stream:
            reply = client.chat.complete(model=args.model, messages=messages, **options)
            if _json(args):
                _dump(reply)
            else:
                print(reply.choices[0].message.text)  # the answer (a reasoning model's thinking is left out)
            return
        with client.chat.stream(model=args.model, messages=messages, **options) as stream:
            for chunk in stream:
                if _json(args):
                    print(chunk.model_dump_json(), flush=True)  # one JSON object per line
                elif chunk.choices:
                    print(chunk.choices[0].delta.text, end="", flush=True)
        if not _json(args):
            print()

    return _run(args, body)


def _embed(args: argparse.Namespace) -> int:
    def body(client: Any) -> None:
        out = client.embeddings.create(model=args.model, input=list(args.texts))
        if _json(args):
            _dump(out)
            return
        for item, text in zip(out.data, args.texts, strict=False):
            vector = item.embedding
            head = ", ".join(f"{v:.4f}" for v in vector[:4]) if isinstance(vector, list) else str(vector)[:40]
            size = len(vector) if isinstance(vector, list) else "?"
            print(f"{item.index}\t{size} dims\t[{head}, …]\t{text[:40]}")

    return _run(args, body)


def _files_upload(args: argparse.Namespace) -> int:
    if not args.path.is_file():
        print(f"error: {args.path} is not a file", file=sys.stderr)
        return 2

    def body(client: Any) -> None:
        with _progress(args, f"upload {args.path.name}") as bar:
            out = client.files.upload(args.path, purpose=args.purpose, progress=bar)
        if _json(args):
            _dump(out)
        else:
            print(f"uploaded {out.id}  {out.filename}  {out.bytes} bytes  purpose {out.purpose}")

    return _run(args, body)


def _files_list(args: argparse.Namespace) -> int:
    query = {k: v for k, v in {"purpose": args.purpose, "search": args.search, "page": args.page,
                               "page_size": args.page_size}.items() if v is not None}

    def body(client: Any) -> None:
        out = client.files.list(**query)
        if _json(args):
            _dump(out)
            return
        print(f"{'ID':<36}  {'BYTES':>10}  {'CREATED':<20}  {'PURPOSE':<10}  FILENAME")
        for f in out.data:
            print(f"{f.id:<36}  {f.bytes:>10}  {_when(f.created_at):<20}  {f.purpose:<10}  {f.filename}")

    return _run(args, body)


def _files_download(args: argparse.Namespace) -> int:
    def body(client: Any) -> None:
        if args.output == "-":
            client.files.download(args.file_id, to=sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        with _progress(args, f"download {args.file_id[:12]}") as bar:
            path = client.files.download(args.file_id, to=Path(args.output or "."), progress=bar)
        size = path.stat().st_size
        if _json(args):
            _dump({"id": args.file_id, "path": str(path.resolve()), "bytes": size})
        else:
            print(f"downloaded {args.file_id} to {path} ({size} bytes)")

    return _run(args, body)


def _files_rm(args: argparse.Namespace) -> int:
    def body(client: Any) -> None:
        out = client.files.delete(args.file_id)
        if _json(args):
            _dump(out)
        else:
            print(f"deleted {out.id}")

    return _run(args, body)


def models_list(args: argparse.Namespace) -> int:
    """``mistral-gateway models`` / ``models list``: the models the gateway serves."""

    def body(client: Any) -> None:
        out = client.models.list()
        if _json(args):
            _dump(out)
            return
        print(f"{'ID':<32}  {'TYPE':<10}  {'CONTEXT':>7}  CAPABILITIES")
        for card in out.data:
            caps = ",".join(name for name, on in card.capabilities.model_dump().items() if on) or "-"
            print(f"{card.id:<32}  {card.type:<10}  {card.max_context_length:>7}  {caps}")

    return _run(args, body)


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
