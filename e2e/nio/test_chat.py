#!/usr/bin/python3
"""Black-box end-to-end tests for luxchat driven by matrix-nio (AsyncClient).

Run with Debian's interpreter, which has python3-matrix-nio:

    LUXCHAT_E2E_URL=http://127.0.0.1:8008 /usr/bin/python3 e2e/nio/test_chat.py

The tests share one asyncio loop and one set of users; they run in order
(test_01 .. test_NN) like a user session. A test whose prerequisite failed
fails with a message saying so. The last line printed is
``nio: N passed, M failed`` (plus ``, K skipped`` when any were skipped).
"""

import asyncio
import json
import logging
import os
import random
import shutil
import string
import sys
import time
import unittest
import urllib.error
import urllib.request

import aiohttp
import nio
from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    ReceiptEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomMessageText,
    RoomReadMarkersResponse,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    TypingNoticeEvent,
)

BASE_URL = os.environ.get("LUXCHAT_E2E_URL", "http://127.0.0.1:8008").rstrip("/")
WAIT_S = float(os.environ.get("LUXCHAT_E2E_WAIT_MS", "15000")) / 1000.0
PASSWORD = "correct horse battery staple"
SCROLLBACK_COUNT = 60
RUN_ID = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(8))

if not os.environ.get("LUXCHAT_E2E_VERBOSE"):
    logging.disable(logging.WARNING)

# Debian's matrix-nio 0.20 builds every client-server URL on the legacy
# /_matrix/client/r0 prefix; current nio releases and the spec (v1.1+) use v3.
# test_00 drives nio unmodified (r0); the scenario then runs on v3 so that it
# tests the endpoints the spec defines rather than the legacy aliases.
NIO_NATIVE_API_PATH = nio.api.MATRIX_API_PATH
SPEC_API_PATH = "/_matrix/client/v3"


def use_api_path(prefix):
    fn = nio.api.Api._build_path
    fn.__defaults__ = fn.__defaults__[:-1] + (prefix,)


def localpart(name):
    return f"{name}_nio_{RUN_ID}"


def describe(resp):
    """Human-readable form of a nio response/error for assertion messages."""
    if resp is None:
        return "None"
    parts = [type(resp).__name__]
    for attr in ("status_code", "message"):
        v = getattr(resp, attr, None)
        if v:
            parts.append(f"{attr}={v!r}")
    transport = getattr(resp, "transport_response", None)
    if transport is not None and getattr(transport, "status", None):
        # method, path (no query: it carries the access token) and HTTP status
        parts.append(f"from {transport.method} {transport.url.path} -> HTTP {transport.status}")
    return " ".join(parts)


def new_client(user=""):
    cfg = AsyncClientConfig(
        encryption_enabled=False,
        store_sync_tokens=False,
        request_timeout=WAIT_S,
        max_timeouts=0,  # no silent retries: a hung request fails the test
        max_limit_exceeded=0,
    )
    return AsyncClient(BASE_URL, user, config=cfg)


def raw_register_dummy_two_step(username):
    """Spec-conformant two-step UIA registration (fallback used only so the
    other tests can still run when nio's one-shot registration is rejected)."""

    def post(body):
        req = urllib.request.Request(
            f"{BASE_URL}/_matrix/client/v3/register",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=WAIT_S) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    body = {"username": username, "password": PASSWORD}
    status, first = post(body)
    if status == 200:
        return first
    session = first.get("session")
    status, res = post({**body, "auth": {"type": "m.login.dummy", "session": session}})
    if status != 200:
        raise AssertionError(f"two-step registration of {username} failed: {status} {res}")
    return res


class Recorder:
    """Collects what a nio client app would see through its callbacks."""

    def __init__(self, client):
        self.timeline = []  # (room_id, event) for joined-room timeline events
        self.invites = []  # (room_id, event) for invite_state events
        self.ephemeral = []  # (room_id, event)
        client.add_event_callback(self._on_timeline, (RoomMessageText, RoomMemberEvent))
        client.add_event_callback(self._on_invite, (InviteMemberEvent,))
        client.add_ephemeral_callback(self._on_ephemeral, (TypingNoticeEvent, ReceiptEvent))

    async def _on_timeline(self, room, event):
        self.timeline.append((room.room_id, event))

    async def _on_invite(self, room, event):
        self.invites.append((room.room_id, event))

    async def _on_ephemeral(self, room, event):
        self.ephemeral.append((room.room_id, event))

    def messages(self, room_id):
        return [(e.sender, e.body) for r, e in self.timeline if r == room_id and isinstance(e, RoomMessageText)]


class NioChatTest(unittest.TestCase):
    """Alice and Bob use luxchat through matrix-nio."""

    loop = None
    alice = bob = None
    rec = {}
    room_id = None
    bob_joined = False
    bob_message_event_id = None

    @classmethod
    def setUpClass(cls):
        use_api_path(SPEC_API_PATH)
        cls.loop = asyncio.new_event_loop()
        cls.alice = new_client(localpart("alice"))
        cls.bob = new_client(localpart("bob"))
        cls.rec = {"alice": Recorder(cls.alice), "bob": Recorder(cls.bob)}
        cls.registration_errors = {}

    @classmethod
    def tearDownClass(cls):
        async def close():
            for c in (cls.alice, cls.bob):
                if c is not None:
                    await c.close()

        cls.loop.run_until_complete(close())
        cls.loop.close()

    # -- helpers -----------------------------------------------------------

    def run_async(self, coro, timeout=None):
        """Run a coroutine on the shared loop, bounded; a hung server becomes a clear failure."""
        limit = timeout or WAIT_S * 2
        what = getattr(coro, "__qualname__", "request")
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coro, limit))
        except (asyncio.TimeoutError, TimeoutError):
            self.fail(f"{what} got no answer from the server in time (limit {limit:.0f}s, per-request {WAIT_S:.0f}s)")
        except aiohttp.ClientConnectionError as e:
            self.fail(f"{what}: cannot reach the server at {BASE_URL}: {e}")

    def need(self, cond, what):
        if not cond:
            self.fail(f"prerequisite missing: {what} (an earlier step failed)")

    def ok(self, resp, cls, what):
        if not isinstance(resp, cls):
            self.fail(f"{what}: expected {cls.__name__}, got {describe(resp)}")
        return resp

    async def sync_until(self, client, check, what, timeout=None, describe_state=None):
        """Sync (long-polling 1 s at a time) until check() is truthy; fail clearly on timeout."""
        deadline = time.monotonic() + (timeout or WAIT_S)
        last_err = None
        while True:
            v = check()
            if v:
                return v
            if time.monotonic() >= deadline:
                extra = f"; instead saw: {describe_state()}" if describe_state else ""
                if last_err:
                    extra += f"; last sync error: {last_err}"
                self.fail(f"timed out after {timeout or WAIT_S:.0f}s waiting for {what}{extra}")
            resp = await client.sync(timeout=1000)
            if not isinstance(resp, SyncResponse):
                last_err = describe(resp)
                await asyncio.sleep(0.2)

    # -- the scenario ------------------------------------------------------

    def test_00_unmodified_nio_paths(self):
        """Debian's nio as shipped (legacy r0 URL prefix) can register, sync and send."""
        if NIO_NATIVE_API_PATH == SPEC_API_PATH:
            self.skipTest("this matrix-nio already uses the v3 prefix")
        use_api_path(NIO_NATIVE_API_PATH)
        client = new_client(localpart("carol"))
        try:
            reg = self.run_async(client.register(localpart("carol"), PASSWORD))
            self.ok(reg, RegisterResponse, f"POST {NIO_NATIVE_API_PATH}/register (m.login.dummy, as nio sends it)")
            self.ok(self.run_async(client.sync(timeout=0)), SyncResponse, f"GET {NIO_NATIVE_API_PATH}/sync")
            room = self.run_async(client.room_create(name="r0 room"))
            self.ok(room, RoomCreateResponse, f"POST {NIO_NATIVE_API_PATH}/createRoom")
            sent = self.run_async(client.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "r0 hello"}))
            self.ok(sent, RoomSendResponse, f"PUT {NIO_NATIVE_API_PATH}/rooms/{{roomId}}/send")
            msgs = self.run_async(client.room_messages(room.room_id, start="", direction=MessageDirection.back, limit=10))
            self.ok(msgs, RoomMessagesResponse, f"GET {NIO_NATIVE_API_PATH}/rooms/{{roomId}}/messages")
            self.assertIn("r0 hello", [e.body for e in msgs.chunk if isinstance(e, RoomMessageText)])
        finally:
            use_api_path(SPEC_API_PATH)
            self.run_async(client.close())

    def test_01_register_and_first_sync(self):
        """Alice and Bob register with nio's register() (m.login.dummy) and sync."""
        failures = []
        for name, client in (("alice", self.alice), ("bob", self.bob)):
            resp = self.run_async(client.register(localpart(name), PASSWORD, device_name=f"{name} nio"))
            if isinstance(resp, RegisterResponse):
                continue
            failures.append(f"{name}: {describe(resp)}")
            # Keep the rest of the suite running on a spec-conformant two-step registration.
            res = raw_register_dummy_two_step(localpart(name))
            client.restore_login(res["user_id"], res["device_id"], res["access_token"])
        self.assertFalse(
            failures,
            "nio's register() sends auth {type: m.login.dummy} without a session in a single "
            f"POST /register; the server rejected it: {failures}",
        )
        self.assertEqual(self.alice.user_id, f"@{localpart('alice')}:{self.alice.user_id.split(':', 1)[1]}")
        for client in (self.alice, self.bob):
            resp = self.run_async(client.sync(timeout=0, full_state=True))
            self.ok(resp, SyncResponse, f"initial /sync of {client.user_id}")

    def test_02_login_new_device(self):
        """Bob logs in with his password on a second device; gets a new device ID."""
        self.need(self.bob.access_token, "Bob registered")
        other = new_client(localpart("bob"))
        try:
            resp = self.run_async(other.login(PASSWORD, device_name="bob nio tablet"))
            self.ok(resp, LoginResponse, "POST /login (m.login.password)")
            self.assertEqual(resp.user_id, self.bob.user_id)
            self.assertNotEqual(resp.device_id, self.bob.device_id, "a new login must create a new device")
            wrong = new_client(localpart("bob"))
            bad = self.run_async(wrong.login("not the password"))
            self.assertNotIsInstance(bad, LoginResponse, "login with a wrong password must fail")
            self.run_async(wrong.close())
        finally:
            self.run_async(other.close())

    def test_03_create_invite_join(self):
        """Alice creates a room and invites Bob; Bob sees the invite, joins; Alice sees the join."""
        self.need(self.alice.access_token and self.bob.access_token, "registered users")
        alice, bob = self.alice, self.bob
        resp = self.run_async(alice.room_create(name="nio garden", topic="Roses only"))
        self.ok(resp, RoomCreateResponse, "Alice: POST /createRoom")
        room_id = resp.room_id
        self.assertTrue(room_id.startswith("!"), room_id)
        type(self).room_id = room_id

        self.ok(self.run_async(alice.room_invite(room_id, bob.user_id)), nio.RoomInviteResponse, "Alice: invite Bob")

        invites = self.rec["bob"].invites
        ev = self.run_async(
            self.sync_until(
                bob,
                lambda: next(
                    (e for r, e in invites if r == room_id and e.state_key == bob.user_id and e.membership == "invite"),
                    None,
                ),
                "Bob to see his invite in /sync rooms.invite",
                describe_state=lambda: f"invited rooms {list(bob.invited_rooms)}",
            )
        )
        self.assertEqual(ev.sender, alice.user_id, "the invite comes from Alice")
        self.assertIn(room_id, bob.invited_rooms)

        self.ok(self.run_async(bob.join(room_id)), JoinResponse, "Bob: POST /join")
        self.run_async(
            self.sync_until(
                bob,
                lambda: room_id in bob.rooms and bob.user_id in bob.rooms[room_id].users,
                "Bob to see himself joined",
            )
        )
        self.run_async(
            self.sync_until(
                alice,
                lambda: room_id in alice.rooms and bob.user_id in alice.rooms[room_id].users,
                "Alice to see Bob joined",
                describe_state=lambda: str(list(alice.rooms[room_id].users)) if room_id in alice.rooms else "no room",
            )
        )
        room = bob.rooms[room_id]
        self.assertEqual(room.name, "nio garden", "Bob sees the room name")
        self.assertEqual(room.topic, "Roses only", "Bob sees the room topic")
        self.assertIn(alice.user_id, room.users, "Bob sees Alice in the room")
        type(self).bob_joined = True

    def test_04_messages_both_ways(self):
        """Alice and Bob exchange messages; each sees the other's in the timeline."""
        self.need(self.bob_joined, "Bob joined the room")
        alice, bob, room_id = self.alice, self.bob, self.room_id
        hello = f"Hello Bob, from nio Alice {time.time()}"
        reply = f"Hi Alice, nio Bob here {time.time()}"

        sent = self.run_async(alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": hello}))
        self.ok(sent, RoomSendResponse, "Alice: PUT /send/m.room.message")
        self.assertTrue(sent.event_id.startswith("$"))
        rec_b = self.rec["bob"]
        ev = self.run_async(
            self.sync_until(
                bob,
                lambda: next((e for r, e in rec_b.timeline if r == room_id and isinstance(e, RoomMessageText) and e.body == hello), None),
                f"Bob to see Alice's message {hello!r}",
                describe_state=lambda: str(rec_b.messages(room_id)[-5:]),
            )
        )
        self.assertEqual(ev.sender, alice.user_id)
        self.assertEqual(ev.event_id, sent.event_id)

        sent2 = self.run_async(bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": reply}))
        self.ok(sent2, RoomSendResponse, "Bob: send reply")
        rec_a = self.rec["alice"]
        ev2 = self.run_async(
            self.sync_until(
                alice,
                lambda: next((e for r, e in rec_a.timeline if r == room_id and isinstance(e, RoomMessageText) and e.body == reply), None),
                f"Alice to see Bob's reply {reply!r}",
                describe_state=lambda: str(rec_a.messages(room_id)[-5:]),
            )
        )
        self.assertEqual(ev2.sender, bob.user_id)
        type(self).bob_message_event_id = ev2.event_id
        bodies = [b for _, b in rec_a.messages(room_id)]
        self.assertLess(bodies.index(hello), bodies.index(reply), f"Alice's timeline order: {bodies}")

    def test_05_display_name(self):
        """Alice sets a display name; Bob sees it in her m.room.member event and profile."""
        self.need(self.bob_joined, "Bob joined the room")
        alice, bob, room_id = self.alice, self.bob, self.room_id
        name = "Alice Pleasance"
        self.ok(self.run_async(alice.set_displayname(name)), nio.ProfileSetDisplayNameResponse, "Alice: PUT /profile/displayname")
        prof = self.run_async(bob.get_displayname(alice.user_id))
        self.ok(prof, nio.ProfileGetDisplayNameResponse, "Bob: GET /profile/{alice}/displayname")
        self.assertEqual(prof.displayname, name)
        rec_b = self.rec["bob"]
        ev = self.run_async(
            self.sync_until(
                bob,
                lambda: next(
                    (
                        e
                        for r, e in rec_b.timeline
                        if r == room_id and isinstance(e, RoomMemberEvent) and e.state_key == alice.user_id and e.content.get("displayname") == name
                    ),
                    None,
                ),
                f"Bob to see an m.room.member event for Alice with displayname {name!r}",
                describe_state=lambda: str(
                    [e.content for r, e in rec_b.timeline if r == room_id and isinstance(e, RoomMemberEvent) and e.state_key == alice.user_id]
                ),
            )
        )
        self.assertEqual(ev.membership, "join")
        self.assertEqual(bob.rooms[room_id].user_name(alice.user_id), name, "Bob's room view shows Alice's new name")

    def test_06_typing(self):
        """Bob sees Alice typing, then not typing."""
        self.need(self.bob_joined, "Bob joined the room")
        alice, bob, room_id = self.alice, self.bob, self.room_id
        rec_b = self.rec["bob"]

        def typing_users():
            evs = [e for r, e in rec_b.ephemeral if r == room_id and isinstance(e, TypingNoticeEvent)]
            return evs[-1].users if evs else None

        self.ok(self.run_async(alice.room_typing(room_id, True, 30000)), RoomTypingResponse, "Alice: PUT /typing true")
        self.run_async(
            self.sync_until(bob, lambda: alice.user_id in (typing_users() or []), "Bob to see Alice typing", describe_state=lambda: str(typing_users()))
        )
        self.ok(self.run_async(alice.room_typing(room_id, False)), RoomTypingResponse, "Alice: PUT /typing false")
        self.run_async(
            self.sync_until(
                bob, lambda: typing_users() is not None and alice.user_id not in typing_users(), "Bob to see Alice stop typing", describe_state=lambda: str(typing_users())
            )
        )

    def test_07_read_receipt(self):
        """Alice marks Bob's message read; Bob sees her m.read receipt."""
        self.need(self.bob_joined and self.bob_message_event_id, "Bob's message seen by Alice")
        alice, bob, room_id = self.alice, self.bob, self.room_id
        event_id = self.bob_message_event_id
        resp = self.run_async(alice.room_read_markers(room_id, fully_read_event=event_id, read_event=event_id))
        self.ok(resp, RoomReadMarkersResponse, "Alice: POST /read_markers")
        rec_b = self.rec["bob"]

        def receipt():
            for r, e in rec_b.ephemeral:
                if r == room_id and isinstance(e, ReceiptEvent):
                    for rc in e.receipts:
                        if rc.user_id == alice.user_id and rc.event_id == event_id and rc.receipt_type == "m.read":
                            return rc
            return None

        rc = self.run_async(
            self.sync_until(
                bob,
                receipt,
                f"Bob to see Alice's m.read receipt on {event_id}",
                describe_state=lambda: str([e.receipts for r, e in rec_b.ephemeral if isinstance(e, ReceiptEvent)]),
            )
        )
        self.assertIsInstance(rc.timestamp, int)

    def test_08_scrollback(self):
        """Bob, on a fresh device, pages back through 60 older messages with /messages, in order."""
        self.need(self.bob_joined, "Bob joined the room")
        alice, room_id = self.alice, self.room_id
        bodies = [f"nio history #{i:02d}" for i in range(1, SCROLLBACK_COUNT + 1)]

        async def send_all():
            for b in bodies:
                r = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": b})
                self.ok(r, RoomSendResponse, f"Alice: send {b}")

        self.run_async(send_all(), timeout=WAIT_S * 6)

        reader = new_client(localpart("bob"))
        try:
            self.ok(self.run_async(reader.login(PASSWORD, device_name="bob scrollback")), LoginResponse, "Bob: login")
            sync = self.run_async(reader.sync(timeout=0, full_state=True, sync_filter={"room": {"timeline": {"limit": 5}}}))
            self.ok(sync, SyncResponse, "Bob: initial /sync with timeline limit 5")
            self.assertIn(room_id, sync.rooms.join, "the room is in Bob's rooms.join")
            tl = sync.rooms.join[room_id].timeline
            initial = [e.body for e in tl.events if isinstance(e, RoomMessageText)]
            self.assertLessEqual(len(tl.events), 5, f"timeline limit 5 was ignored: got {len(tl.events)} events")
            self.assertEqual(initial[-1:], bodies[-1:], f"the initial sync ends with the newest message: {initial}")
            self.assertTrue(tl.limited, "the timeline is limited (there is more history)")
            self.assertTrue(tl.prev_batch, "a limited timeline has a prev_batch token")

            seen = list(reversed([e.body for e in tl.events if isinstance(e, RoomMessageText)]))  # newest first
            token = tl.prev_batch
            pages = 0
            while bodies[0] not in seen:
                self.assertLess(pages, 30, f"no end after {pages} pages; have {len(seen)} messages")
                self.assertTrue(token, f"pagination ended before reaching {bodies[0]!r}; have {list(reversed(seen))[:5]}…")
                resp = self.run_async(reader.room_messages(room_id, start=token, direction=MessageDirection.back, limit=20))
                self.ok(resp, RoomMessagesResponse, "Bob: GET /rooms/{roomId}/messages?dir=b")
                pages += 1
                self.assertTrue(resp.chunk or not resp.end, f"page {pages} was empty but had an end token")
                seen.extend(e.body for e in resp.chunk if isinstance(e, RoomMessageText))
                if resp.end == token:
                    self.fail(f"/messages returned the same token {token!r} it was given")
                token = resp.end
            history = [b for b in reversed(seen) if b.startswith("nio history #")]
            self.assertEqual(history, bodies, "all 60 history messages exactly once, oldest first")
        finally:
            self.run_async(reader.close())

    def test_09_leave(self):
        """Bob leaves; Alice sees his membership become leave."""
        self.need(self.bob_joined, "Bob joined the room")
        alice, bob, room_id = self.alice, self.bob, self.room_id
        self.ok(self.run_async(bob.room_leave(room_id)), RoomLeaveResponse, "Bob: POST /leave")
        rec_a = self.rec["alice"]
        ev = self.run_async(
            self.sync_until(
                alice,
                lambda: next(
                    (
                        e
                        for r, e in rec_a.timeline
                        if r == room_id and isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "leave"
                    ),
                    None,
                ),
                "Alice to see Bob's leave event",
            )
        )
        self.assertEqual(ev.sender, bob.user_id)
        self.assertNotIn(bob.user_id, alice.rooms[room_id].users, "Alice's member list no longer has Bob")
        joined = self.run_async(bob.joined_rooms())
        self.ok(joined, nio.JoinedRoomsResponse, "Bob: GET /joined_rooms")
        self.assertNotIn(room_id, joined.rooms)

    def test_10_interop_with_js_sdk(self):
        """A nio user and a matrix-js-sdk user (e2e/js/interop/peer.mjs) talk in one room."""
        self.need(self.alice.access_token, "Alice registered")
        peer_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "js", "interop", "peer.mjs")
        sdk_dir = os.path.join(os.path.dirname(peer_script), "..", "node_modules", "matrix-js-sdk")
        node = shutil.which("node")
        if not node or not os.path.isdir(sdk_dir):
            self.skipTest("node or e2e/js/node_modules missing (run e2e/run.sh, which runs npm ci)")
        self.run_async(self._interop(node, peer_script), timeout=WAIT_S * 6)

    async def _interop(self, node, peer_script):
        alice = self.alice
        proc = await asyncio.create_subprocess_exec(
            node,
            peer_script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "LUXCHAT_E2E_PEER_TIMEOUT_MS": str(int(WAIT_S * 5000))},
        )
        seen_lines = []

        async def read_msg(what):
            while True:
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S * 2)
                except asyncio.TimeoutError:
                    self.fail(f"js-sdk peer: no output while waiting for {what}; got {seen_lines}")
                if not line:
                    err = (await proc.stderr.read()).decode(errors="replace")[-2000:]
                    self.fail(f"js-sdk peer exited while waiting for {what}; stdout {seen_lines}; stderr {err}")
                seen_lines.append(line.decode(errors="replace").strip())
                try:
                    msg = json.loads(seen_lines[-1])
                except ValueError:
                    continue  # stray log line
                if "error" in msg:
                    self.fail(f"js-sdk peer failed: {msg['error']}")
                return msg

        try:
            ready = await read_msg("the peer to register and sync")
            peer = ready["user_id"]
            created = self.ok(await alice.room_create(name="interop", invite=[peer]), RoomCreateResponse, "Alice: createRoom inviting the js-sdk peer")
            room_id = created.room_id
            await self.sync_until(
                alice,
                lambda: room_id in alice.rooms and peer in alice.rooms[room_id].users,
                "Alice (nio) to see the js-sdk peer join",
            )
            nonce = f"{RUN_ID}-{time.time()}"
            self.ok(
                await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"ping {nonce}"}),
                RoomSendResponse,
                "Alice: send ping",
            )
            rec = self.rec["alice"]
            await self.sync_until(
                alice,
                lambda: (peer, f"pong {nonce}") in rec.messages(room_id),
                f"Alice (nio) to see 'pong {nonce}' from the js-sdk peer",
                describe_state=lambda: str(rec.messages(room_id)),
            )
            await self.sync_until(
                alice,
                lambda: alice.rooms[room_id].user_name(peer) == "JS Peer",
                "Alice (nio) to see the js-sdk peer's display name 'JS Peer'",
                describe_state=lambda: str(alice.rooms[room_id].user_name(peer)),
            )
            done = await read_msg("the peer to finish")
            self.assertEqual(done.get("saw"), f"ping {nonce}", "the js-sdk peer received nio's ping")
            self.assertEqual(await asyncio.wait_for(proc.wait(), WAIT_S), 0)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    def test_11_no_event_delivered_twice(self):
        """Across all of Alice's and Bob's incremental syncs, no timeline event arrived twice."""
        self.need(self.bob_joined, "Bob joined the room")
        for who in ("alice", "bob"):
            seen = {}
            for room_id, ev in self.rec[who].timeline:
                key = (room_id, ev.event_id)
                seen[key] = seen.get(key, 0) + 1
            dups = {k: n for k, n in seen.items() if n > 1}
            self.assertFalse(dups, f"{who} received these timeline events more than once via /sync: {dups}")
            # At least: Bob's join, Alice's hello and her display-name change.
            self.assertGreaterEqual(len(seen), 3, f"{who} recorded almost no timeline events: {list(seen)}")


class _Result(unittest.TextTestResult):
    pass


def main():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(NioChatTest)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, resultclass=_Result)
    try:
        from importlib.metadata import version

        nio_version = version("matrix-nio")
    except Exception:  # pragma: no cover - metadata missing
        nio_version = "?"
    print(f"# luxchat under test: {BASE_URL}; matrix-nio {nio_version}", flush=True)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    line = f"nio: {passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line, flush=True)
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
