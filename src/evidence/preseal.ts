// Hand-off of the id input from the request path to an in-process signer. The request path
// canonicalizes every envelope to compute the evidence_id it returns in-band; the signer
// would rebuild and canonicalize the same envelope again from the stream entry (≈ a quarter
// of its CPU per envelope). When this process also runs the evidence worker, the request
// path leaves the canonical text here, keyed by what identifies its source entry, and the
// worker signs it as is (the id the client was given, by construction). A miss (another
// process, a restart, an evicted entry) only means the worker rebuilds, as it always may.
//
// The key: artifact, issued_ms (Redis TIME of the script), trace_id, the reservation id of
// commit / release, the server-generated request_id of an error (ev_rid), and the
// normalized request text, which carries the idempotency key. Two sources share all of
// these only if two executions stored results under one idempotency key — which the ledger
// scripts turn into a replay (no new source) — or answered errors under one request_id,
// which the server generates per request.
import type { CyclesEvidence } from './types';

export interface Presealed {
  /** JCS text of the envelope with evidence_id = signature = "" */
  t0: string;
  head: Pick<CyclesEvidence, 'artifact_type' | 'signer_did' | 'trace_id'>;
}

/** Bounded: under load the worker takes an entry within tens of milliseconds. */
const MAX_ENTRIES = 5_000;

let enabled = 0;
const entries = new Map<string, Presealed>();

export function presealKey(artifact: string, issuedMs: string | number, traceId: string, reservationId: string | undefined, requestId: string | undefined, request: string): string {
  return `${artifact}\u0000${issuedMs}\u0000${traceId}\u0000${reservationId ?? ''}\u0000${requestId ?? ''}\u0000${request}`;
}

/** The evidence worker of this process is running (nested starts are counted). */
export function enablePreseal(): () => void {
  enabled++;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    if (--enabled === 0) entries.clear();
  };
}

export function presealWanted(): boolean {
  return enabled > 0;
}

export function putPresealed(key: string, value: Presealed): void {
  if (enabled === 0) return;
  if (entries.size >= MAX_ENTRIES) {
    const oldest = entries.keys().next();
    if (!oldest.done) entries.delete(oldest.value);
  }
  entries.set(key, value);
}

/** Takes (and removes) the entry of a source. */
export function takePresealed(key: string): Presealed | undefined {
  const v = entries.get(key);
  if (v !== undefined) entries.delete(key);
  return v;
}
