// Where codegen writes the CyclesEvidence document (cycles-evidence-v0.2.yaml as JSON) in
// src/generated/, so the envelope schema check never depends on the spec bundle being at hand.
export const EVIDENCE_SCHEMA_FILE = 'evidence.schema.json';
