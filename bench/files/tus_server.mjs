// The peer for the upload benchmark: @tus/server with its file store, as its README
// sets it up. usage: node tus_server.mjs PORT DIRECTORY
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [port, directory] = process.argv.slice(2);
const server = new Server({ path: "/files", datastore: new FileStore({ directory }) });
server.listen({ host: "127.0.0.1", port: Number(port) }, () => console.log("listening"));
