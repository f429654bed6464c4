// The browser side of the call test (test/call.test.js), bundled with
// esbuild: a matrix-js-sdk client in a page that places, answers and
// hangs up a 1:1 call through matrix-js-sdk's WebRTC call API, as a web
// client does. Every entry point is on window.lux and returns plain data.
import { createClient, ClientEvent, SyncState } from "matrix-js-sdk";
import { createNewMatrixCall, CallErrorCode } from "matrix-js-sdk/lib/webrtc/call.js";
import { CallEventHandlerEvent } from "matrix-js-sdk/lib/webrtc/callEventHandler.js";

let client;
let call;
const seen = []; // m.call.* event types seen in the room, in order

async function start({ baseUrl, userId, accessToken, deviceId }) {
  client = createClient({
    baseUrl,
    userId,
    accessToken,
    deviceId,
    // iceTransportPolicy "relay": media must cross the TURN server.
    forceTURN: true,
  });
  client.on(CallEventHandlerEvent.Incoming, (c) => {
    call = c;
  });
  client.on("Room.timeline", (ev) => {
    if (ev.getType().startsWith("m.call.")) seen.push(ev.getType());
  });
  const prepared = new Promise((resolve, reject) => {
    client.on(ClientEvent.Sync, (state, _prev, data) => {
      if (state === SyncState.Prepared || state === SyncState.Syncing) resolve();
      if (state === SyncState.Error) reject(new Error(`sync: ${data?.error?.message}`));
    });
  });
  await client.startClient({ initialSyncLimit: 10 });
  await prepared;
  // startClient asks /voip/turnServer; wait until the answer is in.
  for (let i = 0; i < 100 && client.getTurnServers().length === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return { voip: client.supportsVoip(), turnServers: client.getTurnServers() };
}

async function place(roomId) {
  call = createNewMatrixCall(client, roomId);
  await call.placeVoiceCall();
  return call.state;
}

async function answer() {
  if (!call) return "no incoming call";
  await call.answer();
  return call.state;
}

function state() {
  return call ? call.state : "none";
}

// What WebRTC says of the call: bytes of media received and sent, and the
// candidate types of the pair in use.
async function stats() {
  const pc = call?.peerConn;
  if (!pc) return null;
  const report = await pc.getStats();
  const out = { bytesReceived: 0, bytesSent: 0, local: null, remote: null };
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  report.forEach((s) => {
    if (s.type === "inbound-rtp") out.bytesReceived += s.bytesReceived || 0;
    if (s.type === "outbound-rtp") out.bytesSent += s.bytesSent || 0;
    if (s.type === "candidate-pair" && s.state === "succeeded" && (s.nominated || s.selected)) {
      out.local = byId.get(s.localCandidateId)?.candidateType ?? null;
      out.remote = byId.get(s.remoteCandidateId)?.candidateType ?? null;
    }
  });
  return out;
}

function hangup() {
  call.hangup(CallErrorCode.UserHangup, false);
  return call.state;
}

function events() {
  return seen.slice();
}

window.lux = { start, place, answer, state, stats, hangup, events };
window.luxReady = true;
