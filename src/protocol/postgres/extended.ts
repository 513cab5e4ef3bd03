import { ProtocolViolation } from './errors.ts';
import {
  type Bind,
  type Close,
  Code,
  type Describe,
  type Execute,
  type ParameterDescription,
  type Parse,
} from './messages.ts';
import { parseFormats, parseValues, writeFormats, writeValues } from './query.ts';
import type { Reader } from './reader.ts';
import type { Writer } from './writer.ts';

export function parseParse(r: Reader): Parse {
  const name = r.cstring();
  const sql = r.cstring();
  const count = r.uint16(); // unsigned, as in PostgreSQL: up to 65535 parameters
  const parameterTypes: number[] = [];
  for (let i = 0; i < count; i++) parameterTypes.push(r.uint32());
  r.finish('Parse');
  return { type: 'Parse', name, sql, parameterTypes };
}

export function writeParse(w: Writer, m: Parse): Writer {
  w.begin(Code.Parse).cstring(m.name).cstring(m.sql).uint16(m.parameterTypes.length);
  for (const oid of m.parameterTypes) w.uint32(oid);
  return w.end();
}

export function parseBind(r: Reader): Bind {
  const portal = r.cstring();
  const statement = r.cstring();
  const parameterFormats = parseFormats(r);
  const parameters = parseValues(r);
  const resultFormats = parseFormats(r);
  r.finish('Bind');
  return { type: 'Bind', portal, statement, parameterFormats, parameters, resultFormats };
}

export function writeBind(w: Writer, m: Bind): Writer {
  w.begin(Code.Bind).cstring(m.portal).cstring(m.statement);
  writeFormats(w, m.parameterFormats);
  writeValues(w, m.parameters);
  writeFormats(w, m.resultFormats);
  return w.end();
}

function parseTarget(r: Reader): 'S' | 'P' {
  const target = String.fromCharCode(r.byte());
  if (target !== 'S' && target !== 'P')
    throw new ProtocolViolation(`invalid target ${JSON.stringify(target)}`);
  return target;
}

export function parseDescribe(r: Reader): Describe {
  const target = parseTarget(r);
  const name = r.cstring();
  r.finish('Describe');
  return { type: 'Describe', target, name };
}

export function writeDescribe(w: Writer, m: Describe): Writer {
  return w.begin(Code.Describe).byte(m.target.charCodeAt(0)).cstring(m.name).end();
}

export function parseClose(r: Reader): Close {
  const target = parseTarget(r);
  const name = r.cstring();
  r.finish('Close');
  return { type: 'Close', target, name };
}

export function writeClose(w: Writer, m: Close): Writer {
  return w.begin(Code.Close).byte(m.target.charCodeAt(0)).cstring(m.name).end();
}

export function parseExecute(r: Reader): Execute {
  const portal = r.cstring();
  const maxRows = r.int32();
  r.finish('Execute');
  return { type: 'Execute', portal, maxRows };
}

export function writeExecute(w: Writer, m: Execute): Writer {
  return w.begin(Code.Execute).cstring(m.portal).int32(m.maxRows).end();
}

export function parseParameterDescription(r: Reader): ParameterDescription {
  const count = r.uint16();
  const typeOids: number[] = [];
  for (let i = 0; i < count; i++) typeOids.push(r.uint32());
  r.finish('ParameterDescription');
  return { type: 'ParameterDescription', typeOids };
}

export function writeParameterDescription(w: Writer, m: ParameterDescription): Writer {
  w.begin(Code.ParameterDescription).uint16(m.typeOids.length);
  for (const oid of m.typeOids) w.uint32(oid);
  return w.end();
}
