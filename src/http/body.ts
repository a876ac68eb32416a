import type { IncomingMessage } from 'node:http';

/**
 * A request body as text (UTF-8), or null when it passes `max` bytes. Past the limit the rest is
 * discarded, so the client can finish sending and read the answer; past 4 × max the request is
 * cut off.
 */
export async function readBody(req: IncomingMessage, max: number): Promise<string | null> {
  const bytes = await readBodyBytes(req, max);
  return bytes === null ? null : bytes.toString('utf8');
}

/** The body's bytes as received (webhook signatures are computed on them), or null past `max`. */
export function readBodyBytes(req: IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= max) chunks.push(c);
      else if (size > 4 * max) req.destroy();
    });
    req.on('end', () => resolve(size > max ? null : Buffer.concat(chunks)));
    req.on('close', () => resolve(null));
    req.on('error', reject);
  });
}
