"""The web app's signed-in devices and machine names, in a real browser against a real relay
and daemon: one browser signs another out (whose open session view is cut off at once), and
two environments of the same name and directory on two machines are told apart."""

from __future__ import annotations

import socket

import httpx

from relay import admin

from .browser import DESKTOP, PHONE, expect
from .browsing import Browsing, no_horizontal_scroll
from .stack import Stack

ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.0.0 Mobile Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def test_a_browser_signs_another_out_and_its_open_session_ends_at_once(
    stack: Stack, browsing: Browsing
) -> None:
    phone = browsing.sign_in(stack, **PHONE, user_agent=ANDROID)
    desktop = browsing.sign_in(stack, **DESKTOP, user_agent=FIREFOX)
    created = stack.api.post(f"/api/environments/{stack.environment_id}/sessions", json={})
    assert created.status_code == 201, created.text
    # The phone follows a session live (its event stream is open).
    phone.goto(created.json()["url"])
    expect(phone.locator(".session-meta .env-name")).to_have_text("laptop")

    desktop.get_by_role("link", name="Signed-in devices").click()
    expect(desktop.get_by_role("heading", name="Signed-in devices")).to_be_visible()
    devices = desktop.locator(".device")
    expect(devices).to_have_count(2)
    mine = devices.filter(has_text="Firefox on Linux")
    expect(mine.locator(".this-device")).to_have_text("this device")
    expect(mine).to_contain_text("from 127.0.0.1")
    other = devices.filter(has_text="Chrome on Android")
    expect(other.locator(".this-device")).to_have_count(0)
    expect(other).to_contain_text("last used just now")

    other.get_by_role("button", name="Sign out").click()
    expect(devices).to_have_count(1)
    # The phone is out at once: its open stream ends and it shows the signed-out screen
    # without being touched.
    expect(phone.get_by_role("heading", name="Signed out")).to_be_visible(timeout=5_000)
    listed = stack.api.get("/api/sign-ins").json()["sign_ins"]
    assert [s["name"] for s in listed] == ["Firefox on Linux"]

    phone_on_a_phone = browsing.sign_in(stack, **PHONE, user_agent=ANDROID)
    phone_on_a_phone.goto(f"{stack.relay.url}/?devices")
    expect(phone_on_a_phone.locator(".device")).to_have_count(2)
    no_horizontal_scroll(phone_on_a_phone)

    # Signing this device out from the list is a sign-out.
    mine.get_by_role("button", name="Sign out this device").click()
    expect(desktop.get_by_role("heading", name="Signed out")).to_be_visible()
    assert desktop.context.cookies() == []
    listed = stack.api.get("/api/sign-ins").json()["sign_ins"]
    assert [s["name"] for s in listed] == ["Chrome on Android"]


def test_two_machines_with_the_same_environment_name_and_directory_are_told_apart(
    stack: Stack, browsing: Browsing
) -> None:
    # A second machine runs a daemon for a checkout at the same path under the same name.
    credential = admin.create_environment_credential(stack.relay.data_dir, "machine-id-of-box")
    registered = httpx.post(
        f"{stack.relay.url}/daemon/v1/register",
        json={
            "name": "laptop",
            "machine": "machine-id-of-box",
            "hostname": "build-box",
            "directory": str(stack.project),
            "spawn": "same-dir",
            "capacity": 2,
            "agent": "claude",
        },
        headers={"authorization": f"Bearer {credential}"},
        timeout=10,
    )
    assert registered.status_code == 200, registered.text
    box_id = registered.json()["environment_id"]
    here = socket.gethostname()
    created = stack.api.post(f"/api/environments/{stack.environment_id}/sessions", json={})
    assert created.status_code == 201, created.text
    environments = {e["id"]: e for e in stack.api.get("/api/environments").json()["environments"]}
    assert environments[stack.environment_id]["machine"] == here
    assert environments[box_id]["machine"] == "build-box"

    page = browsing.sign_in(stack, **PHONE)
    cards = page.locator(".env-list .env")
    expect(cards).to_have_count(2)
    ours = page.locator(f'.env[data-environment-id="{stack.environment_id}"]')
    box = page.locator(f'.env[data-environment-id="{box_id}"]')
    expect(ours.locator(".env-machine.lookalike")).to_have_text(f"on {here}")
    expect(box.locator(".env-machine.lookalike")).to_have_text("on build-box")
    expect(ours.locator(".env-name")).to_have_text("laptop")
    expect(box.locator(".env-name")).to_have_text("laptop")
    # Sessions and the session page name the machine too, as does the new-session form.
    expect(page.locator(".session-row-where").first).to_have_text(f"laptop on {here}")
    page.locator(".session-row").first.click()
    expect(page.locator(".session-meta .env-name")).to_have_text(f"laptop on {here}")
    page.goto(f"{stack.relay.url}/?new")
    expect(page.locator(".choice .env-machine")).to_have_text([f"on {here}", "on build-box"])
    no_horizontal_scroll(page)
