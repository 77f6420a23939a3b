// Hot retention arguments the ledger scripts take (docs/decisions.md DX1, DX3). The scripts
// never decide retention themselves: the caller passes the configured TTL, or '0' while the
// export job holds records (CYCLES_EXPORT_DIR set) — then the job sets the TTL once the
// record's day is in the cold export.
import type { Config } from '../config';

/** Script argument for a finishing reservation script (commit/release/expire/cascade). */
export const reservationRetainArg = (config: Pick<Config, 'exportDir' | 'reservationRetentionMs'>): string =>
  (config.exportDir ? '0' : String(config.reservationRetentionMs));

/** Script argument for the createEvent record TTL. */
export const createEventRetainArg = (config: Pick<Config, 'exportDir' | 'createEventRetentionMs'>): string =>
  (config.exportDir ? '0' : String(config.createEventRetentionMs));

/** When no configuration reaches a caller (library use): the documented default. */
export const DEFAULT_RETAIN_ARG = String(90 * 86_400_000);
