/**
 * One growable writer for every outgoing message. `begin(type)` reserves the
 * length field; `end()` patches it. Startup-family messages have no type byte:
 * pass 0 to `begin`.
 */
export class Writer {
  private buffer: Buffer;
  private offset = 0;
  private lengthAt = -1;

  constructor(size = 256) {
    this.buffer = Buffer.allocUnsafe(size);
  }

  private ensure(n: number): void {
    if (this.offset + n <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.offset + n));
    this.buffer.copy(grown, 0, 0, this.offset);
    this.buffer = grown;
  }

  begin(type: number): this {
    if (type !== 0) this.byte(type);
    this.lengthAt = this.offset;
    return this.int32(0);
  }

  end(): this {
    this.buffer.writeInt32BE(this.offset - this.lengthAt, this.lengthAt);
    this.lengthAt = -1;
    return this;
  }

  byte(value: number): this {
    this.ensure(1);
    this.buffer[this.offset++] = value;
    return this;
  }

  int16(value: number): this {
    this.ensure(2);
    this.buffer.writeInt16BE(value, this.offset);
    this.offset += 2;
    return this;
  }

  uint16(value: number): this {
    this.ensure(2);
    this.buffer.writeUInt16BE(value, this.offset);
    this.offset += 2;
    return this;
  }

  int32(value: number): this {
    this.ensure(4);
    this.buffer.writeInt32BE(value, this.offset);
    this.offset += 4;
    return this;
  }

  uint32(value: number): this {
    this.ensure(4);
    this.buffer.writeUInt32BE(value, this.offset);
    this.offset += 4;
    return this;
  }

  bytes(value: Uint8Array): this {
    this.ensure(value.length);
    this.buffer.set(value, this.offset);
    this.offset += value.length;
    return this;
  }

  cstring(value: string): this {
    const length = Buffer.byteLength(value);
    this.ensure(length + 1);
    this.buffer.write(value, this.offset);
    this.offset += length;
    this.buffer[this.offset++] = 0;
    return this;
  }

  /** An int32 length (-1 for NULL) followed by the bytes. */
  nullableBytes(value: Uint8Array | null): this {
    if (value === null) return this.int32(-1);
    return this.int32(value.length).bytes(value);
  }

  /** The bytes written so far, as a fresh buffer; the writer starts over. */
  flush(): Buffer {
    const out = Buffer.allocUnsafe(this.offset);
    this.buffer.copy(out, 0, 0, this.offset);
    this.offset = 0;
    return out;
  }
}
