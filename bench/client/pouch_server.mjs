// pouch_server.mjs PORT DIR - a CouchDB-style server for PouchDB (express-pouchdb on
// PouchDB's LevelDB adapter, databases under DIR), the server side of the PouchDB half of
// bench.py. Prints "listening on PORT" once it accepts connections.
import express from "express";
import expressPouchDB from "express-pouchdb";
import PouchDB from "pouchdb";

const [port, dir] = process.argv.slice(2);
const Pouch = PouchDB.defaults({ prefix: `${dir}/` });
const app = express();
app.use("/", expressPouchDB(Pouch, {
  mode: "minimumForPouchDB",
  configPath: `${dir}/config.json`,
  logPath: `${dir}/log.txt`,
}));
const server = app.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
