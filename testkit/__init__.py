"""The outer-edge fakes and a harness that runs real rcd processes; used by ``tests/`` and
``bench/``.

- :mod:`testkit.harness`: a relay on a loopback port, ``rcd start`` as a real subprocess
  with a throwaway home, and a client of the public API with a device token.
- :mod:`testkit.sse`: a small Server-Sent Events reader over a real httpx stream.
- :mod:`testkit.fakes`: what stands at rcd's outer edges in their place: a scripted
  Messages API, a flaky TCP proxy, the pinned Claude Code CLI's environment, and a tiny
  stream-json agent that answers at once.

It is neither the product nor its tests: nothing of the product imports it, and it imports
nothing of ``tests/`` or ``bench/`` (``tests/cli/test_imports.py``). The tests of the fakes
themselves are in ``tests/fakes/``.
"""
