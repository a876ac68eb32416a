import { chmodSync, createWriteStream, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { log, errorFields } from '../log.js';

/**
 * The control socket of an embedded data directory: a Unix domain socket, `<dataDir>/switchboard.sock`,
 * on which the process holding the directory's lock answers one request, `backup`, with a
 * consistent snapshot of its database (the other processes cannot open the directory while it
 * runs). Only local processes of the same user reach it (mode 0600), as with PostgreSQL's socket.
 *
 * Protocol: the client sends `backup\n`; the server answers `ok <bytes>\n` followed by exactly
 * that many bytes (a gzipped tar of the data directory), or `error <reason>\n`, then closes.
 */
export const controlSocketPath = (dataDir: string): string => join(dataDir, 'switchboard.sock');

/** Longest Unix socket path the kernel takes (sun_path less its NUL); Node silently truncates longer ones. */
const MAX_SOCKET_PATH = process.platform === 'linux' ? 107 : 103;
const REQUEST = 'backup';

export interface ControlSocket {
  close(): Promise<void>;
}

/**
 * Listen on the control socket of `dataDir`, whose lock this process holds: a socket file left
 * there is a killed holder's, and is replaced. Removed on close (and at exit). A path too long
 * for a Unix socket is logged and skipped: the server runs, but cannot be asked for backups.
 */
export async function serveControlSocket(dataDir: string, backup: () => Promise<Blob>): Promise<ControlSocket> {
  const path = controlSocketPath(dataDir);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    log.warn('the data directory path is too long for a control socket: `switchboard backup` cannot ask this process while it runs', { path });
    return { close: async () => {} };
  }
  const open = new Set<Socket>();
  const server = createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    answer(socket, backup);
  });
  try {
    rmSync(path, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // the socket file is made by the bind inside listen(): made 0600 there, not chmod-ed after,
      // so there is no moment at which another local user could connect
      const umask = process.umask(0o177);
      try {
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    chmodSync(path, 0o600);
  } catch (err) {
    log.warn('could not listen on the control socket: `switchboard backup` cannot ask this process while it runs', { path, ...errorFields(err) });
    server.close();
    return { close: async () => {} };
  }
  server.unref(); // it never keeps a process alive by itself
  const unlinkAtExit = () => rmSync(path, { force: true });
  process.once('exit', unlinkAtExit);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        process.off('exit', unlinkAtExit);
        server.close(() => resolve()); // unlinks the socket file
        for (const socket of open) socket.destroy(); // a backup still being read when the process stops is cut short
      }),
  };
}

function answer(socket: Socket, backup: () => Promise<Blob>): void {
  let line = '';
  socket.setTimeout(10_000, () => socket.destroy());
  socket.on('error', () => {}); // a client that went away
  const onData = (chunk: Buffer) => {
    line += chunk.toString('latin1');
    const end = line.indexOf('\n');
    if (end < 0 && line.length <= REQUEST.length) return;
    socket.off('data', onData);
    if (line.slice(0, end) !== REQUEST) {
      socket.end('error unknown request: this socket answers only `backup`\n');
      return;
    }
    socket.setTimeout(0);
    void (async () => {
      try {
        const started = performance.now();
        const snapshot = Buffer.from(await (await backup()).arrayBuffer());
        socket.write(`ok ${snapshot.byteLength}\n`);
        socket.end(snapshot);
        socket.setTimeout(60_000, () => socket.destroy()); // a reader that stopped reading
        log.info('backup sent on the control socket', { bytes: snapshot.byteLength, ms: Math.round(performance.now() - started) });
      } catch (err) {
        log.warn('backup on the control socket failed', errorFields(err));
        socket.end('error it could not take a snapshot of its database\n');
      }
    })();
  };
  socket.on('data', onData);
}

/**
 * Ask the holder of `dataDir` for a backup and write it to `file` (created, mode 0600). Resolves
 * to the bytes written, or null when nothing answers on the socket (no socket, or a dead one).
 */
export async function requestBackup(dataDir: string, file: string): Promise<number | null> {
  const path = controlSocketPath(dataDir);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) return null;
  const socket = await new Promise<Socket | null>((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(null));
  });
  if (!socket) return null;
  return new Promise<number>((resolve, reject) => {
    const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
    let header: Buffer | null = Buffer.alloc(0);
    let expected = 0;
    let written = 0;
    const fail = (message: string) => {
      socket.destroy();
      out.destroy();
      reject(new Error(message));
    };
    out.on('error', (err) => fail(err.message));
    socket.on('error', (err) => fail(`the control socket failed: ${err.message}`));
    socket.on('data', (chunk: Buffer) => {
      if (header) {
        header = Buffer.concat([header, chunk]);
        const nl = header.indexOf(10);
        if (nl < 0) {
          if (header.length > 1000) fail('the control socket sent an unreadable answer');
          return;
        }
        const first = header.subarray(0, nl).toString('utf8');
        chunk = header.subarray(nl + 1);
        header = null;
        const ok = /^ok (\d+)$/.exec(first);
        if (!ok) return fail(first.replace(/^error /, ''));
        expected = Number(ok[1]);
      }
      written += chunk.length;
      if (chunk.length && !out.write(chunk)) {
        socket.pause();
        out.once('drain', () => socket.resume());
      }
    });
    socket.on('end', () => {
      if (header) return fail('the control socket closed without an answer');
      if (written !== expected) return fail(`the snapshot was cut short (${written} of ${expected} bytes)`);
      out.end(() => resolve(written));
    });
    socket.write(`${REQUEST}\n`); // not end(): the server would take our half-close for a hang-up
  });
}
