// Uploads a file to a tus server with the real tus-js-client, as an application would.
// usage: node tus_upload.mjs ENDPOINT TOKEN FILE [--path P] [--chunk-size N]
//        [--stop-after BYTES] [--resume URL] [--checksum]
// Prints one JSON line: {"url": ..., "offset": ..., "done": bool} or {"error": ...}.
// --stop-after aborts the upload once that many bytes were acknowledged (for resume
// tests); --resume continues an upload at a known URL (tus-js-client HEADs it first).
import fs from "node:fs";
import path from "node:path";
import * as tus from "tus-js-client";

const [endpoint, token, file, ...rest] = process.argv.slice(2);
const opt = {};
for (let i = 0; i < rest.length; i++) {
  const key = rest[i].replace(/^--/, "");
  opt[key] = key === "checksum" ? true : rest[++i];
}

const data = fs.readFileSync(file);
const upload = new tus.Upload(data, {
  endpoint,
  uploadUrl: opt.resume || null,
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: opt.path || path.basename(file) },
  chunkSize: opt["chunk-size"] ? Number(opt["chunk-size"]) : Infinity,
  retryDelays: [100, 300, 1000],
  storeFingerprintForResuming: false,
  onError(err) {
    console.log(JSON.stringify({ error: String(err), url: upload.url }));
    process.exit(1);
  },
  onChunkComplete(_size, accepted) {
    if (opt["stop-after"] && accepted >= Number(opt["stop-after"])) {
      upload.abort(false).then(() => {
        console.log(JSON.stringify({ url: upload.url, offset: accepted, done: false }));
        process.exit(0);
      });
    }
  },
  onSuccess() {
    console.log(JSON.stringify({ url: upload.url, offset: data.length, done: true }));
    process.exit(0);
  },
});
upload.start();
