"""`fmnist keys`: the API key file the server reads (serving/auth.py): create, list, revoke."""

from __future__ import annotations

import datetime
import os
import sys

from fmnist.cli.errors import CLIError


def cmd_keys(args) -> int:
    from fmnist.serving import auth

    path = args.file or os.environ.get("FMNIST_API_KEYS")
    if not path:
        raise CLIError("which key file? give --file PATH (or set FMNIST_API_KEYS)")
    if args.action == "create":
        key = auth.create(path, args.name, [s.strip() for s in args.scopes.split(",") if s.strip()], args.rate,
                          args.burst, args.image_rate, args.image_burst)
        print(key)
        print(f"(shown once: {path} keeps only its sha256; send it as 'Authorization: Bearer <key>')",
              file=sys.stderr)
    elif args.action == "revoke":
        auth.revoke(path, args.id)
        print(f"revoked {args.id}; servers reading {path} refuse it within a second")
    else:
        keys = auth.listing(path)
        if keys:
            print(f"{'ID':<{len(keys[0].id)}}  {'STATE':7}  {'SCOPES':24}  {'RATE':10}  {'CREATED (UTC)':16}  NAME")
        for k in keys:
            when = datetime.datetime.fromtimestamp(k.created, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
            rate = (f"{k.rate:g}/s" if k.rate else "no limit") + (f", {k.image_rate:g} img/s" if k.image_rate else "")
            print(f"{k.id}  {'revoked' if k.revoked else 'active ':7}  {','.join(k.scopes):24}  {rate:10}  {when}  {k.name}")
    return 0
