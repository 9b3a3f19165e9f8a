"""A phone on the LAN, for ``rcd start --expose lan`` tests: run in a network namespace of
its own (``ip netns exec``), it pins the relay's certificate by the fingerprint the daemon
showed, signs in with the link, and drives a session.

``python -m testkit.lan_phone LINK FINGERPRINT PROMPT`` prints one JSON line: what it saw.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx

from daemon.lan import fingerprint


def plain_http_answer(host: str, port: int) -> str:
    """What a plain HTTP request to the TLS port gets: never an HTTP answer."""
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        try:
            while data := conn.recv(4096):
                chunks.append(data)
        except OSError as exc:
            return f"error: {exc}"
    return b"".join(chunks)[:40].decode("latin-1")


def main(link: str, shown: str, prompt: str) -> dict[str, Any]:
    url = urlsplit(link)
    host, port = url.hostname or "", url.port or 443
    seen: dict[str, Any] = {"plain_http": plain_http_answer(host, port)}
    # Trust on first use, as a person does: the certificate's fingerprint must be the shown one.
    pem = ssl.get_server_certificate((host, port))
    seen["fingerprint_matches"] = fingerprint(ssl.PEM_cert_to_DER_cert(pem)) == shown
    if not seen["fingerprint_matches"]:
        return seen
    pinned = ssl.create_default_context(cadata=pem)  # that certificate, and no other
    with httpx.Client(verify=pinned, timeout=30, follow_redirects=True) as phone:
        signed_in = phone.get(link)
        seen["sign_in"] = signed_in.status_code
        headers = {"X-Requested-With": "rcd"}
        envs = phone.get(f"{url.scheme}://{url.netloc}/api/environments").json()
        seen["online"] = [e["online"] for e in envs["environments"]]
        created = phone.post(
            f"{url.scheme}://{url.netloc}/api/environments/{envs['environments'][0]['id']}/sessions",
            json={"prompt": prompt},
            headers=headers,
        )
        seen["created"] = created.status_code
        session = created.json()
        seen["session_url"] = session.get("url")
        events_url = f"{url.scheme}://{url.netloc}/api/sessions/{session['id']}/events"
        texts: list[str] = []
        with phone.stream("GET", events_url, headers={"Accept": "text/event-stream"}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line.removeprefix("data: "))
                    if event.get("kind") == "assistant_text":
                        texts.append(event["data"]["text"])
                    if event.get("kind") == "turn_result":
                        break
        seen["texts"] = texts
    # And with any other certificate trusted instead: refused.
    try:
        httpx.get(link, verify=ssl.create_default_context(), timeout=10)
        seen["unpinned"] = "accepted"
    except httpx.ConnectError as exc:
        seen["unpinned"] = f"refused: {exc}"
    return seen


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])), flush=True)
