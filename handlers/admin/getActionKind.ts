// Same operation as on the runtime plane (both merged documents carry it; decision DG2).
export { default } from '../runtime/getActionKind';
