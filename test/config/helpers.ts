import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { generate } from 'selfsigned';
import { ConfigError, parseConfig } from '../../src/config/index.ts';

/** A fresh directory under the OS temp dir, removed when the test file ends. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'warden-config-'));
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes files (path relative to dir → content), creating folders; returns dir. */
export async function writeFiles(dir: string, files: Record<string, string>): Promise<string> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  return dir;
}

export interface Pem {
  readonly cert: string;
  readonly key: string;
}

/** A self-signed EC certificate and its key (EC: fast to generate). */
export async function selfSigned(commonName = 'localhost'): Promise<Pem> {
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    algorithm: 'sha256',
  });
  return { cert: pems.cert, key: pems.private };
}

/** Dedents a template so YAML in tests can be indented with the code; line 1 is the first non-empty line. */
export function yaml(strings: TemplateStringsArray, ...values: unknown[]): string {
  const text = strings
    .reduce((result, part, index) => result + String(values[index - 1]) + part)
    .replace(/^\n/, '');
  const indent = Math.min(
    ...text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => line.search(/\S/)),
  );
  return text
    .split('\n')
    .map((line) => line.slice(indent))
    .join('\n');
}

/** The ConfigError a config text is refused with (a test fails if it is accepted). */
export function configRefusal(text: string, file: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfig(text, file, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  }
  return assert.fail('expected the config to be refused');
}
