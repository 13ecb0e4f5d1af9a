// pouch_bench.mjs URL DIR ROWS CHANGES - the PouchDB half of bench.py: puts ROWS sales
// documents on the server at URL (not timed), replicates them into an empty PouchDB
// replica under DIR (timed: the initial sync), updates CHANGES of them in the replica and
// replicates those back (timed: the steady sync). Prints one JSON line of seconds.
import PouchDB from "pouchdb";

const [url, dir, rowsArg, changesArg] = process.argv.slice(2);
const rows = Number(rowsArg), changes = Number(changesArg);
const id = (i) => `s${String(i).padStart(7, "0")}`;
const remote = new PouchDB(`${url}/sales`);
for (let start = 0; start < rows; start += 5000) {
  const docs = [];
  for (let i = start; i < Math.min(rows, start + 5000); i++)
    docs.push({ _id: id(i), customer_id: `c${i % 997}`, total: i % 10000 });
  await remote.bulkDocs(docs);
}

// the same page size as libferry's pull (PouchDB's default is 100)
const local = new PouchDB(`${dir}/replica`);
let t0 = performance.now();
const pulled = await local.replicate.from(remote, { batch_size: 1000 });
const initial = (performance.now() - t0) / 1000;
if (pulled.docs_written !== rows) throw new Error(`pulled ${pulled.docs_written} of ${rows}`);

let seed = 1;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const picked = new Set();
while (picked.size < changes) picked.add(Math.floor(rand() * rows));
const got = await local.allDocs({ keys: [...picked].map(id), include_docs: true });
await local.bulkDocs(got.rows.map((r) => ({ ...r.doc, total: r.doc.total + 1 })));
t0 = performance.now();
const pushed = await local.replicate.to(remote, { batch_size: 1000 });
const steady = (performance.now() - t0) / 1000;
if (pushed.docs_written !== changes) throw new Error(`pushed ${pushed.docs_written}`);
console.log(JSON.stringify({ rows, initial_s: initial, changes, steady_s: steady }));
