"""A stand-in for the ``tailscale`` CLI: the commands ``rcd start --expose tailscale`` runs.

Run as ``python -m testkit.fakes.tailscale ARGS`` (tests put a two-line wrapper named
``tailscale`` on PATH). State lives in ``$FAKE_TAILSCALE_DIR``:

* ``status.json``: what ``tailscale status --json`` prints (tests copy one of the samples in
  ``tailscale_samples/``); absent, the command fails as it does when tailscaled is not
  running;
* ``serve.json``: the serve config, which ``serve --bg --https=PORT TARGET`` and ``serve
  --https=PORT off`` change and ``serve status --json`` prints (``{}`` when absent);
* ``calls.jsonl``: every invocation's arguments, one JSON list per line, for the test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    state = Path(os.environ["FAKE_TAILSCALE_DIR"])
    with (state / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps(argv) + "\n")
    status_path, serve_path = state / "status.json", state / "serve.json"
    if argv == ["status", "--json"]:
        if not status_path.exists():
            print(
                "failed to connect to local tailscaled; it doesn't appear to be running",
                file=sys.stderr,
            )
            return 1
        sys.stdout.write(status_path.read_text())
        return 0
    serve = json.loads(serve_path.read_text()) if serve_path.exists() else {}
    if argv == ["serve", "status", "--json"]:
        print(json.dumps(serve))
        return 0
    if argv[:1] == ["serve"]:
        https = [a.split("=", 1)[1] for a in argv if a.startswith("--https=")]
        port = https[0] if https else "443"
        host = json.loads(status_path.read_text())["Self"]["DNSName"].rstrip(".")
        if argv[-1] == "off":
            serve.get("TCP", {}).pop(port, None)
            serve.get("Web", {}).pop(f"{host}:{port}", None)
        else:
            serve.setdefault("TCP", {})[port] = {"HTTPS": True}
            serve.setdefault("Web", {})[f"{host}:{port}"] = {"Handlers": {"/": {"Proxy": argv[-1]}}}
        serve_path.write_text(json.dumps(serve))
        return 0
    print(f"fake tailscale: unknown command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
