import type { IdentityConfig, TargetConfig } from '../config/index.ts';

/** A target's access rule: the identity is named, or of a kind listed, or in a group listed. */
export function mayConnect(identity: IdentityConfig, target: TargetConfig): boolean {
  return (
    target.access.identities.includes(identity.name) ||
    target.access.kinds.includes(identity.kind) ||
    identity.groups.some((group) => target.access.groups.includes(group))
  );
}
