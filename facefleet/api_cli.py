"""`facefleet api serve` (the HTTP API and review page) and `facefleet api keys ...` (the
admin commands that create, list and revoke API keys, straight in the database)."""

from __future__ import annotations

import argparse
from typing import Any

from facefleet.console import err

SERVE_EPILOG = """\
The API serves the batch system named by FACEFLEET_BROKER_URL, FACEFLEET_S3_* and
FACEFLEET_ARCHIVE_URL (keys live in that database). Users reach the object store through
presigned URLs naming FACEFLEET_S3_PUBLIC_ENDPOINT. OpenAPI at /docs, review page at /review/,
Prometheus metrics at /metrics, probes at /healthz and /readyz.
"""


def add_commands(sub: Any) -> None:
    api = sub.add_parser(
        "api",
        help="the HTTP API: serve it, manage its keys",
        description="The HTTP API with API keys, webhooks, metrics and the review page.",
    )
    commands = api.add_subparsers(dest="api_command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the API (uvicorn)",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="listen address (default FACEFLEET_API_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default FACEFLEET_API_PORT, 8000)")
    serve.set_defaults(func=_serve)

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create a key and print it (once: only its hash is kept)",
        description="Scopes: read (status, results, search, people), submit (uploads, jobs, "
        "enrolment, corrections, cancel), admin (everything: deletion, forgetting, training).",
    )
    create.add_argument("name", help="who or what the key is for")
    create.add_argument(
        "--scope",
        action="append",
        choices=("read", "submit", "admin"),
        required=True,
        help="repeat for several",
    )
    create.add_argument("--callback-url", help="default webhook URL of this key's jobs")
    create.set_defaults(func=_create)
    listing = actions.add_parser("list", help="every key (never their secrets)")
    listing.set_defaults(func=_list)
    revoke = actions.add_parser("revoke", help="revoke a key: it stops working at once")
    revoke.add_argument("key_id", help="the id of `keys list` (the part after ffk_)")
    revoke.set_defaults(func=_revoke)


def _settings(args: argparse.Namespace) -> Any:
    from facefleet.core.settings import get_settings

    overrides = {k: getattr(args, k, None) for k in ("host", "port")}
    return get_settings(api_host=overrides["host"], api_port=overrides["port"])


def _key_store(settings: Any) -> Any:
    from facefleet.api.keys import KeyStore
    from facefleet.archive.connect import open_archive
    from facefleet.core.errors import FacefleetError

    if not settings.archive_url:
        raise FacefleetError("API keys live in the archive database: set FACEFLEET_ARCHIVE_URL")
    archive = open_archive(settings)
    assert archive is not None
    return KeyStore(archive)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from facefleet.api.app import create_app

    settings = _settings(args)
    app = create_app(settings)  # fails here, in one line, on bad settings
    # No access log of query strings or headers: keys travel in the Authorization header
    # only, and uvicorn's access log shows the method, path and status.
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, proxy_headers=True)
    return 0


def _create(args: argparse.Namespace) -> int:
    from facefleet.jobs.webhooks import check_job_callback

    settings = _settings(args)
    callback = args.callback_url
    if callback is not None:
        callback = check_job_callback(settings, callback)
    new = _key_store(settings).create(args.name, args.scope, callback)
    err.print(
        f"created key {new.key.key_id} ({new.key.name}: {', '.join(new.key.scopes)}); "
        "it is shown only now:",
        markup=False,
    )
    print(new.token)
    return 0


def _list(args: argparse.Namespace) -> int:
    from facefleet.cluster_cli import _row, _table, _when
    from facefleet.console import print_table

    keys = _key_store(_settings(args)).list()
    table = _table("id", "name", "scopes", "created", "last used", "revoked")
    for key in keys:
        _row(
            table,
            key.key_id,
            key.name,
            ",".join(key.scopes),
            _when(key.created),
            _when(key.last_used) if key.last_used else "-",
            _when(key.revoked) if key.revoked else "-",
        )
    print_table(table)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    key = _key_store(_settings(args)).revoke(args.key_id)
    err.print(f"revoked key {key.key_id} ({key.name})", markup=False)
    return 0
