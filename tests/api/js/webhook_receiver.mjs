// A webhook receiver for the API tests: verifies every delivery with the
// standardwebhooks package (the Standard Webhooks reference library) and answers with
// the statuses it is told to. Prints {"port": N} once listening on 127.0.0.1.
//   POST /control {secret, statuses: [500, 500], status: 200, bodyBytes: 0}  sets what
//        comes next (bodyBytes > 0: answer with that many bytes instead of a small JSON)
//   GET  /log     every delivery so far: {id, timestamp, signature, body, verified, error, answered}
// Anything else is a delivery.
import http from "node:http";
import { Webhook } from "standardwebhooks";

let secret = null;
let statuses = [];
let fallback = 200;
let bodyBytes = 0;
const log = [];

function readBody(req) {
  return new Promise((resolve) => {
    const parts = [];
    req.on("data", (c) => parts.push(c));
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
  });
}

function reply(res, status, value) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
}

const server = http.createServer(async (req, res) => {
  const body = await readBody(req);
  if (req.url === "/control") {
    const c = JSON.parse(body);
    if ("secret" in c) secret = c.secret;
    if ("statuses" in c) statuses = c.statuses;
    if ("status" in c) fallback = c.status;
    if ("bodyBytes" in c) bodyBytes = c.bodyBytes;
    return reply(res, 200, { ok: true });
  }
  if (req.url === "/log") return reply(res, 200, log);
  const entry = {
    path: req.url,
    id: req.headers["webhook-id"],
    timestamp: req.headers["webhook-timestamp"],
    signature: req.headers["webhook-signature"],
    contentType: req.headers["content-type"],
    body,
    verified: false,
    error: null,
  };
  try {
    const payload = new Webhook(secret).verify(body, req.headers);
    entry.verified = true;
    entry.type = payload.type;
  } catch (e) {
    entry.error = String(e && e.message ? e.message : e);
  }
  entry.answered = statuses.length ? statuses.shift() : fallback;
  log.push(entry);
  if (bodyBytes > 0) {
    res.writeHead(entry.answered, { "content-type": "text/plain" });
    return res.end("x".repeat(bodyBytes));
  }
  reply(res, entry.answered, { received: entry.verified });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
