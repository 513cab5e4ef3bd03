/**
 * Signed checkpoints: now and then (and when Warden stops) the audit worker
 * signs its chain's head, (chain, seq, hash, time), with an Ed25519 key kept
 * in the data folder. The chain alone cannot show that its newest events
 * were cut off, or that every hash was recomputed after an edit; a
 * checkpoint can, as long as the key that signed it is not the forger's:
 * an auditor keeps the public key (`warden audit public-key`) and verifies
 * with it (`warden audit verify --public-key`). Each checkpoint also goes to
 * the log, a copy outside the store (`--checkpoints <log file>`).
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface Checkpoint {
  readonly chain: string;
  readonly seq: number;
  readonly hash: string;
  /** ISO time of signing. */
  readonly at: string;
  /** The signer's public key: base64 of its SPKI DER. */
  readonly key: string;
  /** Ed25519 signature of signedText, base64. */
  readonly signature: string;
}

/** The key file Warden makes in its data folder when the config names none. */
export const SIGNING_KEY_FILE = 'audit-signing.pem';

/** What is signed: a fixed prefix (a checkpoint signature is good for nothing else), then the fields. */
export function signedText(c: Pick<Checkpoint, 'chain' | 'seq' | 'hash' | 'at'>): string {
  return `warden audit checkpoint\n${c.chain}\n${c.seq}\n${c.hash}\n${c.at}`;
}

export class CheckpointSigner {
  readonly publicKey: string;

  constructor(private readonly privateKey: KeyObject) {
    this.publicKey = publicKeyText(createPublicKey(privateKey));
  }

  sign(head: { readonly chain: string; readonly seq: number; readonly hash: string }, at: Date): Checkpoint {
    const fields = { chain: head.chain, seq: head.seq, hash: head.hash, at: at.toISOString() };
    const signature = sign(null, Buffer.from(signedText(fields)), this.privateKey).toString('base64');
    return { ...fields, key: this.publicKey, signature };
  }
}

/** Whether the checkpoint's signature is good for its own key. */
export function signatureHolds(c: Checkpoint): boolean {
  try {
    const key = createPublicKey({ key: Buffer.from(c.key, 'base64'), format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== 'ed25519') return false;
    return verify(null, Buffer.from(signedText(c)), key, Buffer.from(c.signature, 'base64'));
  } catch {
    return false;
  }
}

/** A short name of a public key, for messages: the start of its SHA-256. */
export function keyId(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

function publicKeyText(key: KeyObject): string {
  return key.export({ format: 'der', type: 'spki' }).toString('base64');
}

/** A public key from a PEM file (or a private key's file: its public half), as checkpoints carry it. */
export function publicKeyOf(pem: string, file: string): string {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (error) {
    throw new Error(`${file} holds no public or private key in PEM form: ${(error as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new Error(
      `${file} holds a ${key.asymmetricKeyType} key; audit checkpoints are signed with Ed25519`,
    );
  }
  return publicKeyText(key);
}

/** The public key, as PEM, of the signing key in `file`. */
export function publicKeyPem(file: string): string {
  return createPublicKey(readFileSync(file, 'utf8')).export({ format: 'pem', type: 'spki' }).toString();
}

/**
 * The signing key: the configured file, or the data folder's, made once
 * (0600) when there is none yet, so every restart signs with the same key.
 */
export function signingKey(
  configured: string | undefined,
  dataDir: string,
): { file: string; key: KeyObject } {
  const file = configured ?? path.join(dataDir, SIGNING_KEY_FILE);
  let pem: string | undefined;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || configured !== undefined) {
      throw new Error(`cannot read the audit signing key ${file}: ${(error as Error).message}`);
    }
  }
  if (pem === undefined) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    try {
      writeFileSync(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { flag: 'wx', mode: 0o600 });
    } catch (error) {
      // Another worker made it first: use theirs.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    pem = readFileSync(file, 'utf8');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (error) {
    throw new Error(
      `the audit signing key ${file} is not a private key in PEM form: ${(error as Error).message}`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new Error(`the audit signing key ${file} is a ${key.asymmetricKeyType} key; it must be Ed25519`);
  }
  return { file, key };
}

/** A checkpoint as a log line carries it (the log hides any field named `key`). */
export interface LoggedCheckpoint extends Omit<Checkpoint, 'key'> {
  readonly publicKey: string;
}

export function loggedCheckpoint({ key, ...rest }: Checkpoint): LoggedCheckpoint {
  return { ...rest, publicKey: key };
}

/**
 * Checkpoints from a log file: the lines Warden logged as it signed them
 * (JSON lines with msg "audit checkpoint"); other lines are skipped.
 */
export function checkpointsInLog(text: string): Checkpoint[] {
  const found: Checkpoint[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('audit checkpoint')) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      continue;
    }
    const c = (parsed as { checkpoint?: unknown }).checkpoint as Partial<LoggedCheckpoint> | undefined;
    if (
      c &&
      typeof c.chain === 'string' &&
      typeof c.seq === 'number' &&
      typeof c.hash === 'string' &&
      typeof c.at === 'string' &&
      typeof c.publicKey === 'string' &&
      typeof c.signature === 'string'
    ) {
      found.push({
        chain: c.chain,
        seq: c.seq,
        hash: c.hash,
        at: c.at,
        key: c.publicKey,
        signature: c.signature,
      });
    }
  }
  return found;
}
