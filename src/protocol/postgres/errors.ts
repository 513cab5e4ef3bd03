/**
 * A violation of the wire protocol by the peer. It ends the one connection it
 * happened on (SQLSTATE 08P01) and nothing else.
 */
export class ProtocolViolation extends Error {
  readonly sqlstate = '08P01';
  override readonly name = 'ProtocolViolation';
}
