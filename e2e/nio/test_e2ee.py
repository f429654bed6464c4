#!/usr/bin/python3
"""End-to-end encryption through luxchat with matrix-nio and libolm (python3-olm).

Run with Debian's interpreter, which has python3-matrix-nio and python3-olm:

    LUXCHAT_E2E_URL=http://127.0.0.1:8008 /usr/bin/python3 e2e/nio/test_e2ee.py

Alice and Bob (nio clients with encryption enabled and a crypto store in a
temp dir) upload device and one-time keys, share an encrypted room, exchange
Olm-wrapped Megolm room keys through /sendToDevice and /keys/claim, and
decrypt each other's messages. test_06 does the same between nio (Alice) and
a matrix-js-sdk user with Rust crypto (e2e/js/interop/peer.mjs --encrypted).
The tests run in order; the last line printed is ``nio-e2ee: N passed, M failed``.
"""

import asyncio
import json
import logging
import os
import random
import shutil
import string
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import nio
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    MegolmEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

BASE_URL = os.environ.get("LUXCHAT_E2E_URL", "http://127.0.0.1:8008").rstrip("/")
WAIT_S = float(os.environ.get("LUXCHAT_E2E_WAIT_MS", "15000")) / 1000.0
PASSWORD = "correct horse battery staple"
RUN_ID = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(8))
MEGOLM = "m.megolm.v1.aes-sha2"

if not os.environ.get("LUXCHAT_E2E_VERBOSE"):
    logging.disable(logging.WARNING)

# Debian's nio 0.20 builds URLs on the legacy r0 prefix; use the spec's v3
# (the server serves both; see test_chat.py).
_build = nio.api.Api._build_path
_build.__defaults__ = _build.__defaults__[:-1] + ("/_matrix/client/v3",)


def localpart(name):
    return f"{name}_nioe2e_{RUN_ID}"


def describe(resp):
    if resp is None:
        return "None"
    parts = [type(resp).__name__]
    for attr in ("status_code", "message"):
        v = getattr(resp, attr, None)
        if v:
            parts.append(f"{attr}={v!r}")
    return " ".join(parts)


def raw(method, path, token=None, body=None):
    """A raw client-server request; returns (status, decoded body)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{BASE_URL}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class NioE2EETest(unittest.TestCase):
    """Alice and Bob chat in an encrypted room with nio + libolm."""

    loop = None
    store_dir = None
    alice = bob = None
    room_id = None
    seen = {}

    @classmethod
    def setUpClass(cls):
        cls.loop = asyncio.new_event_loop()
        cls.store_dir = tempfile.mkdtemp(prefix="luxchat-nio-e2ee-")
        cls.seen = {"alice": [], "bob": []}
        for name in ("alice", "bob"):
            path = os.path.join(cls.store_dir, name)
            os.makedirs(path)
            cfg = AsyncClientConfig(
                encryption_enabled=True,
                store_sync_tokens=False,
                request_timeout=WAIT_S,
                max_timeouts=0,
                max_limit_exceeded=0,
            )
            client = AsyncClient(BASE_URL, localpart(name), store_path=path, config=cfg)
            seen = cls.seen[name]

            async def on_event(room, event, seen=seen):
                seen.append((room.room_id, event))

            client.add_event_callback(on_event, (RoomMessageText, MegolmEvent))
            setattr(cls, name, client)

    @classmethod
    def tearDownClass(cls):
        async def close():
            for c in (cls.alice, cls.bob):
                if c is not None:
                    await c.close()

        cls.loop.run_until_complete(close())
        cls.loop.close()
        shutil.rmtree(cls.store_dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------

    def run_async(self, coro, timeout=None):
        limit = timeout or WAIT_S * 2
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coro, limit))
        except (asyncio.TimeoutError, TimeoutError):
            self.fail(f"{getattr(coro, '__qualname__', 'request')} got no answer in {limit:.0f}s")

    def need(self, cond, what):
        if not cond:
            self.fail(f"prerequisite missing: {what} (an earlier step failed)")

    def ok(self, resp, cls, what):
        if not isinstance(resp, cls):
            self.fail(f"{what}: expected {cls.__name__}, got {describe(resp)}")
        return resp

    async def crypto_round(self, client):
        """What nio's sync_forever does besides syncing: send queued to-device
        messages, upload, query and claim keys as the client needs."""
        await client.send_to_device_messages()
        if client.should_upload_keys:
            self.ok(await client.keys_upload(), KeysUploadResponse, f"{client.user_id}: POST /keys/upload")
        if client.should_query_keys:
            self.ok(await client.keys_query(), KeysQueryResponse, f"{client.user_id}: POST /keys/query")
        if client.should_claim_keys:
            self.ok(await client.keys_claim(client.get_users_for_key_claiming()), KeysClaimResponse, f"{client.user_id}: POST /keys/claim")

    async def sync_until(self, client, check, what, describe_state=None):
        deadline = time.monotonic() + WAIT_S * 2
        last_err = None
        while True:
            v = check()
            if v:
                return v
            if time.monotonic() >= deadline:
                extra = f"; instead saw: {describe_state()}" if describe_state else ""
                if last_err:
                    extra += f"; last sync error: {last_err}"
                self.fail(f"timed out waiting for {what}{extra}")
            resp = await client.sync(timeout=500)
            if not isinstance(resp, SyncResponse):
                last_err = describe(resp)
                await asyncio.sleep(0.2)
            await self.crypto_round(client)

    def bodies(self, who, room_id=None):
        out = []
        want = room_id or self.room_id
        for room_id, ev in self.seen[who]:
            if room_id == want and isinstance(ev, RoomMessageText):
                out.append((ev.sender, ev.body, ev.decrypted))
        return out

    # -- the scenario ------------------------------------------------------

    def test_01_register_and_upload_keys(self):
        """Alice and Bob register; nio uploads their device and one-time keys (signed by libolm)."""
        for client in (self.alice, self.bob):
            self.ok(self.run_async(client.register(client.user, PASSWORD, device_name="nio e2ee")), RegisterResponse, "POST /register")
            self.ok(self.run_async(client.sync(timeout=0, full_state=True)), SyncResponse, "initial /sync")
            self.assertTrue(client.should_upload_keys, "a new nio device wants to upload keys")
            self.run_async(self.crypto_round(client))
            self.assertFalse(client.should_upload_keys, "after /keys/upload nio has nothing more to upload")
        # The server counts Alice's one-time keys and publishes her device keys.
        resp = self.run_async(self.alice.sync(timeout=0))
        self.ok(resp, SyncResponse, "/sync")
        counts = self.alice.olm.uploaded_key_count
        self.assertTrue(counts and counts > 0, f"device_one_time_keys_count reported by /sync: {counts}")
        status, body = raw("POST", "/_matrix/client/v3/keys/query", self.bob.access_token, {"device_keys": {self.alice.user_id: []}})
        self.assertEqual(status, 200, body)
        device = body["device_keys"][self.alice.user_id][self.alice.device_id]
        self.assertEqual(device["keys"][f"ed25519:{self.alice.device_id}"], self.alice.olm.account.identity_keys["ed25519"])

    def test_02_encrypted_room(self):
        """Alice creates a room with m.room.encryption and invites Bob, who joins."""
        self.need(self.alice.access_token and self.bob.access_token, "registered users")
        alice, bob = self.alice, self.bob
        resp = self.run_async(
            alice.room_create(
                name="nio secret garden",
                invite=[bob.user_id],
                initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}],
            )
        )
        self.ok(resp, RoomCreateResponse, "Alice: POST /createRoom")
        type(self).room_id = room_id = resp.room_id
        self.run_async(self.sync_until(bob, lambda: room_id in bob.invited_rooms, "Bob to see the invite"))
        self.ok(self.run_async(bob.join(room_id)), JoinResponse, "Bob: join")
        for client in (alice, bob):
            self.run_async(
                self.sync_until(
                    client,
                    lambda c=client: room_id in c.rooms and bob.user_id in c.rooms[room_id].users and c.rooms[room_id].encrypted,
                    f"{client.user_id} to see the encrypted room with Bob in it",
                )
            )

    def test_03_alice_to_bob(self):
        """Alice's message travels encrypted (Olm-shared Megolm key) and Bob decrypts it."""
        self.need(self.room_id, "the encrypted room")
        alice, bob = self.alice, self.bob
        # Alice learns Bob's devices (device_lists / /keys/query) before encrypting for them.
        self.run_async(
            self.sync_until(alice, lambda: bob.device_id in alice.device_store[bob.user_id], "Alice to know Bob's device",
                            describe_state=lambda: str(list(alice.device_store[bob.user_id])))
        )
        body = f"nio secret for Bob {RUN_ID}"
        sent = self.run_async(alice.room_send(self.room_id, "m.room.message", {"msgtype": "m.text", "body": body}, ignore_unverified_devices=True))
        self.ok(sent, RoomSendResponse, "Alice: send encrypted message")
        # The server only has ciphertext.
        status, ev = raw("GET", f"/_matrix/client/v3/rooms/{urllib.request.quote(self.room_id)}/event/{urllib.request.quote(sent.event_id)}", bob.access_token)
        self.assertEqual(status, 200, ev)
        self.assertEqual(ev["type"], "m.room.encrypted")
        self.assertNotIn(body, json.dumps(ev))
        got = self.run_async(
            self.sync_until(bob, lambda: (alice.user_id, body, True) in self.bodies("bob"), "Bob to decrypt Alice's message",
                            describe_state=lambda: str(self.seen["bob"][-3:]))
        )
        self.assertTrue(got)

    def test_04_bob_to_alice(self):
        """Bob replies encrypted; Alice decrypts. Both directions used /keys/claim and /sendToDevice."""
        self.need(self.room_id, "the encrypted room")
        alice, bob = self.alice, self.bob
        self.run_async(self.sync_until(bob, lambda: alice.device_id in bob.device_store[alice.user_id], "Bob to know Alice's device"))
        body = f"nio reply for Alice {RUN_ID}"
        sent = self.run_async(bob.room_send(self.room_id, "m.room.message", {"msgtype": "m.text", "body": body}, ignore_unverified_devices=True))
        self.ok(sent, RoomSendResponse, "Bob: send encrypted reply")
        self.run_async(
            self.sync_until(alice, lambda: (bob.user_id, body, True) in self.bodies("alice"), "Alice to decrypt Bob's reply",
                            describe_state=lambda: str(self.seen["alice"][-3:]))
        )
        # Each side holds an Olm session with the other's device, made from a claimed one-time key.
        self.assertTrue(alice.olm.session_store.get(bob.olm.account.identity_keys["curve25519"]), "Alice has an Olm session with Bob")
        self.assertTrue(bob.olm.session_store.get(alice.olm.account.identity_keys["curve25519"]), "Bob has an Olm session with Alice")

    def test_05_one_time_key_counts(self):
        """A claimed one-time key is gone from the server, and /sync tells nio the new count."""
        self.need(self.room_id, "the encrypted room")
        alice = self.alice
        status, before = raw("POST", "/_matrix/client/v3/keys/upload", alice.access_token, {})
        self.assertEqual(status, 200, before)
        n = before["one_time_key_counts"].get("signed_curve25519", 0)
        status, claimed = raw("POST", "/_matrix/client/v3/keys/claim", self.bob.access_token,
                              {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}})
        self.assertEqual(status, 200, claimed)
        self.assertEqual(len(claimed["one_time_keys"][alice.user_id][alice.device_id]), 1)
        status, after = raw("POST", "/_matrix/client/v3/keys/upload", alice.access_token, {})
        self.assertEqual(after["one_time_key_counts"].get("signed_curve25519", 0), n - 1, "one key fewer after a claim")
        # A long poll that times out still carries the counts.
        # (nio ignores a response whose next_batch it has seen: read the response itself.)
        resp = self.ok(self.run_async(alice.sync(timeout=500)), SyncResponse, "Alice: /sync")
        self.assertEqual(resp.device_key_count.signed_curve25519, n - 1, "device_one_time_keys_count in /sync")

    def test_06_nio_and_js_sdk_in_one_encrypted_room(self):
        """nio (libolm) and matrix-js-sdk (Rust crypto, interop/peer.mjs --encrypted) decrypt each other in one room."""
        self.need(self.alice.access_token, "Alice registered with uploaded keys")
        peer_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "js", "interop", "peer.mjs")
        sdk_dir = os.path.join(os.path.dirname(peer_script), "..", "node_modules", "matrix-js-sdk")
        node = shutil.which("node")
        if not node or not os.path.isdir(sdk_dir):
            self.skipTest("node or e2e/js/node_modules missing (run e2e/run.sh, which runs npm ci)")
        self.run_async(self._encrypted_interop(node, peer_script), timeout=WAIT_S * 6)

    async def _encrypted_interop(self, node, peer_script):
        alice = self.alice
        proc = await asyncio.create_subprocess_exec(
            node,
            peer_script,
            "--encrypted",
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
                    err = (await asyncio.wait_for(proc.stderr.read(), WAIT_S)).decode(errors="replace")[-2000:]
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
            ready = await read_msg("the peer to start Rust crypto, register and sync")
            peer, peer_device = ready["user_id"], ready.get("device_id")
            self.assertTrue(peer_device, f"the encrypted peer reports its device_id: {ready}")
            created = self.ok(
                await alice.room_create(
                    name="nio + js-sdk secrets",
                    invite=[peer],
                    initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}],
                ),
                RoomCreateResponse,
                "Alice: createRoom (encrypted) inviting the js-sdk peer",
            )
            room_id = created.room_id
            await self.sync_until(
                alice,
                lambda: room_id in alice.rooms and peer in alice.rooms[room_id].users and alice.rooms[room_id].encrypted,
                "Alice (nio) to see the js-sdk peer join the encrypted room",
            )
            # The Rust crypto device's keys reach nio through device_lists / /keys/query.
            await self.sync_until(
                alice,
                lambda: peer_device in alice.device_store[peer],
                f"Alice (nio) to know the js-sdk peer's device {peer_device}",
                describe_state=lambda: str(list(alice.device_store[peer])),
            )
            nonce = f"{RUN_ID}-{time.time()}"
            ping = f"ping {nonce}"
            sent = self.ok(
                await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": ping}, ignore_unverified_devices=True),
                RoomSendResponse,
                "Alice: send encrypted ping",
            )
            status, ev = raw("GET", f"/_matrix/client/v3/rooms/{urllib.request.quote(room_id)}/event/{urllib.request.quote(sent.event_id)}", alice.access_token)
            self.assertEqual(status, 200, ev)
            self.assertEqual(ev["type"], "m.room.encrypted", "nio's ping is stored encrypted")
            self.assertNotIn(nonce, json.dumps(ev))

            pong = f"pong {nonce}"
            await self.sync_until(
                alice,
                lambda: (peer, pong, True) in self.bodies("alice", room_id),
                f"Alice (nio) to decrypt {pong!r} from the js-sdk peer",
                describe_state=lambda: str([(type(e).__name__, getattr(e, "body", None) or getattr(e, "session_id", None))
                                            for r, e in self.seen["alice"] if r == room_id][-3:]),
            )
            done = await read_msg("the peer to decrypt the ping and finish")
            self.assertEqual(done.get("saw"), ping, "the js-sdk peer decrypted nio's ping")
            self.assertEqual(done.get("wire_type"), "m.room.encrypted", f"the ping reached the js-sdk peer encrypted: {done}")
            self.assertEqual(done.get("algorithm"), MEGOLM, f"the ping was Megolm-encrypted: {done}")
            # The pong travelled encrypted too.
            pong_ev = next(e for r, e in self.seen["alice"] if r == room_id and isinstance(e, RoomMessageText) and e.body == pong)
            status, ev = raw("GET", f"/_matrix/client/v3/rooms/{urllib.request.quote(room_id)}/event/{urllib.request.quote(pong_ev.event_id)}", alice.access_token)
            self.assertEqual(status, 200, ev)
            self.assertEqual(ev["type"], "m.room.encrypted", "the js-sdk peer's pong is stored encrypted")
            self.assertEqual(ev["content"].get("algorithm"), MEGOLM)
            self.assertNotIn(nonce, json.dumps(ev))
            self.assertEqual(await asyncio.wait_for(proc.wait(), WAIT_S), 0, "js-sdk peer exit status")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class _Result(unittest.TextTestResult):
    pass


def main():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(NioE2EETest)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, resultclass=_Result)
    try:
        from importlib.metadata import version

        versions = f"matrix-nio {version('matrix-nio')}, python-olm {version('python-olm')}"
    except Exception:  # pragma: no cover - metadata missing
        versions = "matrix-nio, python-olm"
    print(f"# luxchat under test: {BASE_URL}; {versions}", flush=True)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"nio-e2ee: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""), flush=True)
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
