// Requirement catalogue data (see requirements.ts). Example entries from CONFORMANCE.md.
import type { Requirement } from './requirements';

export const CATALOG: Requirement[] = [
  {
    id: 'CONF-MUST-RUNTIME-OPS',
    level: 'MUST',
    source: 'CONFORMANCE.md §MUST Runtime operations',
    text: 'Implement and honor the semantics of createReservation, commitReservation, releaseReservation and extendReservation.',
  },
  {
    id: 'CONF-SHOULD-DECIDE',
    level: 'SHOULD',
    source: 'CONFORMANCE.md §SHOULD',
    text: 'Implement POST /v1/decide (marked OPTIONAL in the v0 spec).',
  },
  {
    id: 'CONF-MAY-EVIDENCE',
    level: 'MAY',
    source: 'CONFORMANCE.md §MAY',
    text: 'Emit CyclesEvidence; an envelope a server does emit MUST conform to cycles-evidence-v0.2.yaml.',
  },
];
