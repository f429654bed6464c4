// Media repository through matrix-js-sdk: Alice uploads an image and a
// video and posts them in a room; Bob reads the events and downloads both
// through the authenticated media endpoints, fetches a thumbnail, and seeks
// in the video with a Range request. Independent of the E2EE tests.
// Then a voice message (m.audio with MSC3245/MSC1767 fields) whose audio is
// fetched with a Range request, and an encrypted attachment in an
// encrypted room (AES-256-CTR + SHA-256 per "Sending encrypted
// attachments"): Bob decrypts the event, downloads the ciphertext and
// decrypts it.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { deflateSync } from "node:zlib";

import {
  BASE_URL,
  ClientEvent,
  MatrixEventEvent,
  Preset,
  RoomEvent,
  RoomMemberEvent,
  WAIT_MS,
  clientFor,
  membershipSeenBy,
  registerUser,
  startAndSync,
  step,
  stopAllClients,
  waitFor,
  withTimeout,
} from "../lib/helpers.js";

// CRC-32 (PNG chunks).
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
/** An RGB gradient PNG of w×h. */
function makePNG(w, h) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    for (let x = 0; x < w; x++) {
      raw[row + 1 + x * 3] = (x * 255) / w;
      raw[row + 2 + x * 3] = (y * 255) / h;
      raw[row + 3 + x * 3] = 128;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
const pngSize = (buf) => ({ w: buf.readUInt32BE(16), h: buf.readUInt32BE(20) });

async function get(url, token, headers = {}) {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}`, ...headers } });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

describe("media repository (matrix-js-sdk)", () => {
  const image = makePNG(640, 480);
  const video = Buffer.alloc(300_000);
  for (let i = 0; i < video.length; i++) video[i] = (i * 31) & 0xff;
  let alice, bob, bobCreds, roomId, imageEvent, videoEvent;

  after(() => stopAllClients());

  it("Alice uploads an image and a video and posts them in a room Bob joins", async () => {
    const a = await registerUser("alice");
    bobCreds = await registerUser("bob");
    alice = clientFor(a);
    bob = clientFor(bobCreds);
    const cfg = await step("GET /_matrix/client/v1/media/config", () => alice.getMediaConfig(true));
    assert.ok(cfg["m.upload.size"] >= image.length, `m.upload.size ${cfg["m.upload.size"]}`);

    const img = await step("upload image", () => alice.uploadContent(image, { name: "gradient.png", type: "image/png" }));
    const vid = await step("upload video", () => alice.uploadContent(video, { name: "clip.mp4", type: "video/mp4" }));
    assert.match(img.content_uri, /^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/);
    assert.match(vid.content_uri, /^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/);

    ({ room_id: roomId } = await alice.createRoom({ preset: Preset.PrivateChat, invite: [bobCreds.user_id] }));
    await bob.joinRoom(roomId);
    imageEvent = (
      await alice.sendMessage(roomId, {
        msgtype: "m.image",
        body: "gradient.png",
        url: img.content_uri,
        info: { mimetype: "image/png", size: image.length, w: 640, h: 480 },
      })
    ).event_id;
    videoEvent = (
      await alice.sendMessage(roomId, {
        msgtype: "m.video",
        body: "clip.mp4",
        url: vid.content_uri,
        info: { mimetype: "video/mp4", size: video.length },
      })
    ).event_id;
  });

  it("Bob downloads both through the authenticated endpoints", async () => {
    assert.ok(roomId, "prerequisite missing: the upload step failed");
    for (const [eventId, want, type] of [
      [imageEvent, image, "image/png"],
      [videoEvent, video, "video/mp4"],
    ]) {
      const ev = await bob.fetchRoomEvent(roomId, eventId);
      const url = bob.mxcUrlToHttp(ev.content.url, undefined, undefined, undefined, false, true, true);
      assert.ok(url.startsWith(`${BASE_URL}/_matrix/client/v1/media/download/`), url);
      const { res, body } = await get(url, bobCreds.access_token);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), type);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.match(res.headers.get("content-disposition"), /^inline; filename="/);
      assert.ok(body.equals(want), `${type}: downloaded bytes differ`);
      const anon = await fetch(url);
      assert.equal(anon.status, 401, "authenticated media served without a token");
    }
  });

  it("Bob fetches a 96×96 crop thumbnail of the image", async () => {
    assert.ok(roomId, "prerequisite missing: the upload step failed");
    const ev = await bob.fetchRoomEvent(roomId, imageEvent);
    const url = bob.mxcUrlToHttp(ev.content.url, 96, 96, "crop", false, true, true);
    assert.ok(url.includes("/_matrix/client/v1/media/thumbnail/"), url);
    const { res, body } = await get(url, bobCreds.access_token);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/png");
    assert.deepEqual(pngSize(body), { w: 96, h: 96 });
  });

  it("Bob seeks in the video: a Range request returns 206", async () => {
    assert.ok(roomId, "prerequisite missing: the upload step failed");
    const ev = await bob.fetchRoomEvent(roomId, videoEvent);
    const url = bob.mxcUrlToHttp(ev.content.url, undefined, undefined, undefined, false, true, true);
    const { res, body } = await get(url, bobCreds.access_token, { Range: "bytes=150000-170000" });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get("content-range"), `bytes 150000-170000/${video.length}`);
    assert.equal(res.headers.get("accept-ranges"), "bytes");
    assert.ok(body.equals(video.subarray(150000, 170001)), "range bytes differ");
    const past = await get(url, bobCreds.access_token, { Range: `bytes=${video.length}-` });
    assert.equal(past.res.status, 416);
  });

  it("Bob downloads a voice message's audio with a Range request (206)", async () => {
    assert.ok(roomId, "prerequisite missing: the upload step failed");
    const audio = Buffer.alloc(48_000);
    audio.write("OggS", 0, "ascii");
    for (let i = 4; i < audio.length; i++) audio[i] = (i * 7) & 0xff;
    const up = await step("upload voice clip", () => alice.uploadContent(audio, { name: "voice.ogg", type: "audio/ogg" }));
    const waveform = Array.from({ length: 40 }, (_, i) => Math.round(512 + 400 * Math.sin(i / 3)));
    const { event_id: voiceEvent } = await alice.sendMessage(roomId, {
      msgtype: "m.audio",
      body: "Voice message",
      url: up.content_uri,
      info: { mimetype: "audio/ogg", size: audio.length, duration: 3000 },
      "org.matrix.msc1767.text": "Voice message",
      "org.matrix.msc1767.file": { url: up.content_uri, name: "voice.ogg", mimetype: "audio/ogg", size: audio.length },
      "org.matrix.msc1767.audio": { duration: 3000, waveform },
      "org.matrix.msc3245.voice": {},
    });
    const ev = await bob.fetchRoomEvent(roomId, voiceEvent);
    assert.deepEqual(ev.content["org.matrix.msc3245.voice"], {});
    assert.deepEqual(ev.content["org.matrix.msc1767.audio"].waveform, waveform);
    const url = bob.mxcUrlToHttp(ev.content.url, undefined, undefined, undefined, false, true, true);
    const { res, body } = await get(url, bobCreds.access_token, { Range: "bytes=0-4095" });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get("content-type"), "audio/ogg");
    assert.equal(res.headers.get("content-range"), `bytes 0-4095/${audio.length}`);
    assert.ok(body.equals(audio.subarray(0, 4096)), "range bytes differ");
  });
});

const unpadded = (buf) => buf.toString("base64").replace(/=+$/, "");

/** Encrypts a file as "Sending encrypted attachments" describes: the ciphertext and the EncryptedFile (without url). */
function encryptAttachment(plain) {
  const key = randomBytes(32);
  const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]); // the counter half starts at zero
  const cipher = createCipheriv("aes-256-ctr", key, iv);
  const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
  return {
    ciphertext,
    file: {
      key: { kty: "oct", key_ops: ["encrypt", "decrypt"], alg: "A256CTR", k: key.toString("base64url"), ext: true },
      iv: unpadded(iv),
      hashes: { sha256: unpadded(createHash("sha256").update(ciphertext).digest()) },
      v: "v2",
    },
  };
}

/** Checks the hash and decrypts an attachment with its EncryptedFile. */
function decryptAttachment(ciphertext, file) {
  assert.equal(file.v, "v2");
  assert.equal(file.key.alg, "A256CTR");
  assert.equal(unpadded(createHash("sha256").update(ciphertext).digest()), file.hashes.sha256, "ciphertext hash mismatch");
  const decipher = createDecipheriv("aes-256-ctr", Buffer.from(file.key.k, "base64url"), Buffer.from(file.iv, "base64"));
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
}

describe("encrypted attachment in an encrypted room (matrix-js-sdk + Rust crypto)", () => {
  const creds = {};
  const c = {};
  let roomId;

  after(() => stopAllClients());

  it("Alice and Bob start crypto clients and share an encrypted room", async () => {
    creds.alice = await registerUser("malice", { deviceName: "Alice media" });
    creds.bob = await registerUser("mbob", { deviceName: "Bob media" });
    for (const who of ["alice", "bob"]) {
      c[who] = clientFor(creds[who]);
      await withTimeout(c[who].initRustCrypto({ useIndexedDB: false }), WAIT_MS, `${who}: initRustCrypto`);
      await startAndSync(c[who]);
    }
    const { alice, bob } = c;
    ({ room_id: roomId } = await step("Alice: createRoom with m.room.encryption", () =>
      alice.createRoom({
        invite: [bob.getUserId()],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
      }),
    ));
    await waitFor(bob, [ClientEvent.Room, RoomMemberEvent.Membership], () => bob.getRoom(roomId)?.getMyMembership() === "invite", {
      what: "Bob to see the invite",
    });
    await step("Bob: join", () => bob.joinRoom(roomId));
    await waitFor(alice, [RoomMemberEvent.Membership, RoomEvent.Timeline], () => membershipSeenBy(alice, roomId, bob.getUserId()) === "join", {
      what: "Alice to see Bob joined",
    });
    for (const client of [alice, bob]) {
      const deadline = Date.now() + WAIT_MS * 2;
      while (!(await client.getCrypto().isEncryptionEnabledInRoom(roomId))) {
        assert.ok(Date.now() < deadline, `${client.getUserId()}'s crypto never treated the room as encrypted`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  });

  it("Alice sends an encrypted image; Bob decrypts the event, downloads and decrypts the file", async () => {
    assert.ok(roomId, "prerequisite missing: the encrypted room step failed");
    const { alice, bob } = c;
    const image = makePNG(64, 48);
    const { ciphertext, file } = encryptAttachment(image);
    assert.ok(!ciphertext.equals(image));
    const up = await step("upload ciphertext", () => alice.uploadContent(ciphertext, { name: "", type: "application/octet-stream" }));
    const body = `secret.png (${Date.now()})`;
    const { event_id: eventId } = await step("Alice: send (encrypted) m.image", () =>
      alice.sendMessage(roomId, {
        msgtype: "m.image",
        body,
        file: { ...file, url: up.content_uri },
        info: { mimetype: "image/png", size: image.length, w: 64, h: 48 },
      }),
    );
    const ev = await waitFor(
      bob,
      [RoomEvent.Timeline, MatrixEventEvent.Decrypted, ClientEvent.Sync],
      () =>
        bob
          .getRoom(roomId)
          ?.getLiveTimeline()
          .getEvents()
          .find((e) => e.getId() === eventId && e.getType() === "m.room.message" && !e.isDecryptionFailure() && e.getContent().body === body),
      { timeout: WAIT_MS * 2, what: "Bob to decrypt the image event" },
    );
    assert.equal(ev.getWireType(), "m.room.encrypted", "the event travelled encrypted");
    const got = ev.getContent().file;
    assert.equal(got.url, up.content_uri);
    const url = bob.mxcUrlToHttp(got.url, undefined, undefined, undefined, false, true, true);
    assert.ok(url.startsWith(`${BASE_URL}/_matrix/client/v1/media/download/`), url);
    const { res, body: downloaded } = await get(url, creds.bob.access_token);
    assert.equal(res.status, 200);
    assert.ok(downloaded.equals(ciphertext), "the server returned other bytes than were uploaded");
    assert.ok(decryptAttachment(downloaded, got).equals(image), "decrypted attachment differs");
  });
});
