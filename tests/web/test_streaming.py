"""A reply that streams, in a real browser, from the real ``claude`` CLI (against the fake
Messages API): the phone sees it grow while it is written, a desktop that opens the
session mid-reply sees the text so far, and both end with the one finished message."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import wire
from testkit.waiting import eventually_sync

from .browser import DESKTOP, PHONE, expect
from .browsing import Browsing, no_horizontal_scroll
from .stack import Stack
from .test_web_app import agent_texts, start_from_phone

#: Records every text the reply being written showed, in order (a MutationObserver on the
#: timeline, so no growth between two polls is missed).
RECORD_GROWTH = """() => {
  window.grown = [];
  const note = () => {
    const node = document.querySelector('.writing-text');
    const text = node ? node.textContent : null;
    if (text && window.grown[window.grown.length - 1] !== text) window.grown.push(text);
  };
  new MutationObserver(note).observe(document.body, {
    subtree: true, childList: true, characterData: true,
  });
}"""


def test_a_slow_reply_grows_on_the_phone_and_a_late_desktop_sees_it_so_far(
    claude_stack: Stack, browsing: Browsing, artifacts: Path
) -> None:
    stack = claude_stack
    phone = browsing.sign_in(stack, **PHONE)
    start_from_phone(phone, "hello")
    expect(agent_texts(phone)).to_have_text(["echo: hello"])
    session_url = phone.url
    desktop = browsing.sign_in(stack, **DESKTOP)

    phone.evaluate(RECORD_GROWTH)
    box = phone.get_by_label("Message")
    box.fill("slow 3")
    box.press("Enter")
    eventually_sync(
        lambda: len(phone.evaluate("window.grown")) >= 3,
        timeout=20,
        what="the reply to start growing on the phone",
    )
    phone.screenshot(path=artifacts / "phone-streaming.png")
    no_horizontal_scroll(phone)

    # The desktop opens the session while the reply is being written: the text so far.
    desktop.goto(session_url)
    writing = desktop.locator(".writing-text")
    expect(writing).to_contain_text("t0001 t0002 t0003")
    so_far = writing.text_content() or ""
    desktop.screenshot(path=artifacts / "desktop-streaming.png")

    expect(agent_texts(phone)).to_have_count(2, timeout=20_000)
    final = agent_texts(phone).last.text_content() or ""
    assert final.startswith("t0001 t0002") and final.rstrip().endswith("t0030")
    grown: list[str] = phone.evaluate("window.grown")
    # Growing at least 5 times while it was written, each a start of the finished message.
    assert len(grown) >= 5, grown
    assert all(final.startswith(text) for text in grown), grown
    assert all(len(a) < len(b) for a, b in itertools.pairwise(grown)), grown
    assert final.startswith(so_far) and len(so_far) >= len("t0001 t0002 t0003")
    # Once finished: the one message, nothing left being written, on both.
    for page in (phone, desktop):
        expect(agent_texts(page)).to_have_text(["echo: hello", final])
        expect(page.locator(".writing-text")).to_have_count(0)


def test_the_web_app_joins_pieces_by_the_same_rule_as_the_relay(
    stack: Stack, browsing: Browsing
) -> None:
    """``applyPartial`` in conversation.js against ``wire.apply_partial``, on pieces cut,
    repeated, reordered and lost at random (seeded): the same text after every piece."""
    page = browsing.sign_in(stack, **DESKTOP)
    rng = random.Random(18)
    cases = []
    for _ in range(200):
        # Characters outside the BMP too: offsets count code points, not UTF-16 units.
        text = "".join(rng.choice("ab é\n{}😀𝄞") for _ in range(rng.randint(1, 30)))
        cuts = sorted({rng.randint(1, len(text)) for _ in range(rng.randint(0, 5))} | {len(text)})
        pieces, start = [], 0
        for end in cuts:
            pieces.append({"offset": start, "text": text[start:end]})
            start = end
        delivered = []
        for p in pieces:
            if rng.random() < 0.15:
                continue  # lost
            delivered.append(p)
            if rng.random() < 0.3:
                delivered.append(rng.choice(pieces))  # again, maybe late
        if rng.random() < 0.2:
            delivered.append({"offset": 0, "text": text})  # started over
        seqs = [rng.choice([3, 3, 3, 2, 4]) for _ in delivered]
        cases.append(
            [
                {"after_seq": s, "block": 0, "kind": "text", "name": None, **p}
                for s, p in zip(seqs, delivered, strict=True)
            ]
        )
    in_browser = page.evaluate(
        """async (cases) => {
          const { applyPartial } = await import('/assets/conversation.js');
          return cases.map((pieces) => {
            let shown = null;
            return pieces.map((p) => {
              shown = applyPartial(shown, p, 3);
              return shown?.text ?? null;
            });
          });
        }""",
        cases,
    )
    in_python = []
    for pieces in cases:
        shown, texts = None, []
        for p in pieces:
            shown = wire.apply_partial(shown, wire.decode(wire.AssistantPartial, p), 3)
            texts.append(shown.text if shown is not None else None)
        in_python.append(texts)
    assert in_browser == in_python
