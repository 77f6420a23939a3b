// Same operation as on the admin plane (both merged documents carry it; decision DG2).
export { default } from '../admin/listActionQuotaCounters';
