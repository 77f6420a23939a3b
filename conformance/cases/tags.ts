// Catalogue tags (conformance/catalog.ts) of the cases generated per operation: which
// requirement an operation's presence and contract stand for, and at what level.
import type { OperationInfo } from '../../src/generated/operations';
import type { Case } from '../harness';

export type CaseMeta = Pick<Case, 'level' | 'requirements' | 'tags'>;

/** The catalogue entry an operation's existence answers (CONFORMANCE.md §MUST / §SHOULD). */
const OP_REQUIREMENT: Record<string, { id: string; level: 'MUST' | 'SHOULD' }> = {
  'runtime:createReservation': { id: 'OPS.CREATE_RESERVATION', level: 'MUST' },
  'runtime:commitReservation': { id: 'OPS.COMMIT_RESERVATION', level: 'MUST' },
  'runtime:releaseReservation': { id: 'OPS.RELEASE_RESERVATION', level: 'MUST' },
  'runtime:extendReservation': { id: 'OPS.EXTEND_RESERVATION', level: 'MUST' },
  'runtime:getBalances': { id: 'XP.GET_BALANCES', level: 'MUST' },
  'admin:getBalances': { id: 'XP.GET_BALANCES', level: 'MUST' },
  'admin:listEvents': { id: 'XP.LIST_EVENTS', level: 'MUST' },
  'admin:getEvent': { id: 'XP.GET_EVENT', level: 'MUST' },
  'admin:replayEvents': { id: 'XP.REPLAY_EVENTS', level: 'MUST' },
  'admin:listTenantEvents': { id: 'XP.LIST_TENANT_EVENTS', level: 'MUST' },
  'admin:listWebhookDeliveries': { id: 'XP.LIST_DELIVERIES', level: 'MUST' },
  'admin:listTenantWebhookDeliveries': { id: 'XP.LIST_TENANT_DELIVERIES', level: 'MUST' },
  'admin:introspectAuth': { id: 'XP.INTROSPECT', level: 'MUST' },
  'runtime:decide': { id: 'SHOULD.DECIDE', level: 'SHOULD' },
  'runtime:listReservations': { id: 'SHOULD.LIST_RESERVATIONS', level: 'SHOULD' },
  'runtime:getReservation': { id: 'SHOULD.GET_RESERVATION', level: 'SHOULD' },
  'runtime:createEvent': { id: 'SHOULD.CREATE_EVENT', level: 'SHOULD' },
};

/** Tags of a per-operation case; `extra` are the requirements the case itself checks
 *  (e.g. AUTH.API_KEY for the no-credentials probe). Reference-only operations are MAY. */
export function opMeta(op: OperationInfo, extra: string[], tags: string[]): CaseMeta {
  // CyclesEvidence serving is optional (CONFORMANCE.md §MAY)
  if (op.operationId === 'getEvidence' || op.operationId === 'getEvidenceJwks') return { level: 'MAY', requirements: [], tags };
  const own = OP_REQUIREMENT[`${op.plane}:${op.operationId}`];
  if (op.feature !== 'base') return { level: 'SHOULD', requirements: ['SHOULD.V0126', ...extra], tags };
  if (own) return { level: own.level, requirements: [own.id, ...extra], tags };
  return { level: op.conformance === 'normative' ? 'MUST' : 'MAY', requirements: op.conformance === 'normative' ? extra : [], tags };
}
