// Server CPU per greeting in a large room (BENCHMARKS.md, "Micro-benchmarks"):
// an original-page editor types a character, 20 ms later a newcomer connects and
// reads its `sync`, N times; the server's CPU is read from /proc before and after.
//
//   coedit serve --data-dir COPY_OF_A_DATA_DIR_HOLDING_big-0 --port 18414 &
//   NODE_PATH=tests/interop/node_modules node scripts/greetings.cjs 18414 $! 60
//
// Prints one JSON line: greetings, sync_hex_chars, server_cpu_ms, ms_per_greeting.
const fs = require('fs');
const WebSocket = require('ws');
const Y = require('yjs');

const [port, pid, rounds] = process.argv.slice(2).map(Number);
const url = (id) => `ws://127.0.0.1:${port}/api/ws/big-0?client_id=${id}`;

/** The server's user + system CPU in ms (clock ticks of 10 ms). */
function serverCpuMs() {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Connects as `id` and resolves with the socket and its `sync` message. */
function greeted(id) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url(id));
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'sync') resolve([socket, message]);
    });
    socket.on('error', reject);
  });
}

(async () => {
  const [editor, sync] = await greeted('editor');
  const doc = new Y.Doc();
  Y.applyUpdate(doc, Buffer.from(sync.data, 'hex'));
  const text = doc.getText('content');
  let syncChars = 0;
  const before = serverCpuMs();
  for (let round = 0; round < rounds; round++) {
    const known = Y.encodeStateVector(doc);
    text.insert(0, 'k');
    const update = Y.encodeStateAsUpdate(doc, known);
    editor.send(JSON.stringify({ type: 'update', data: Buffer.from(update).toString('hex') }));
    await new Promise((done) => setTimeout(done, 20));
    const [newcomer, greeting] = await greeted(`newcomer-${round}`);
    syncChars = greeting.data.length;
    newcomer.close();
  }
  const used = serverCpuMs() - before;
  console.log(JSON.stringify({
    greetings: rounds,
    sync_hex_chars: syncChars,
    server_cpu_ms: used,
    ms_per_greeting: used / rounds,
  }));
  editor.close();
  process.exit(0);
})();
