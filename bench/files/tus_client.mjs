// Uploads one file with tus-js-client (the same client, settings and file for ferry and
// for @tus/server) and prints {"seconds": s, "bytes": n} when the server has it all.
// usage: node tus_client.mjs ENDPOINT FILE [TOKEN]
import fs from "node:fs";
import * as tus from "tus-js-client";

const [endpoint, file, token] = process.argv.slice(2);
const size = fs.statSync(file).size;
const started = process.hrtime.bigint();
const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  uploadSize: size,
  headers: token ? { Authorization: `Bearer ${token}` } : {},
  metadata: { filename: "bench/big.bin" },
  retryDelays: [],
  onError(err) {
    console.error(String(err));
    process.exit(1);
  },
  onSuccess() {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(JSON.stringify({ seconds, bytes: size, url: upload.url }));
  },
});
upload.start();
