// Verifies a LiveKit access token with LiveKit's own verifier
// (livekit-server-sdk's TokenVerifier: signature, issuer, expiry) and
// prints its claims as JSON. Driven by internal/integration's LiveKit
// tests:
//   LIVEKIT_KEY=… LIVEKIT_SECRET=… node lib/verify-livekit-token.js < token
// Exits 1 with the verifier's error when the token is refused.
import { TokenVerifier } from "livekit-server-sdk";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const token = Buffer.concat(chunks).toString("utf8").trim();
try {
    const claims = await new TokenVerifier(process.env.LIVEKIT_KEY, process.env.LIVEKIT_SECRET).verify(token, 0);
    process.stdout.write(JSON.stringify(claims));
} catch (err) {
    process.stderr.write(`refused: ${err.code ?? ""} ${err.message}\n`);
    process.exit(1);
}
