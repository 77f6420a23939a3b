// Webhook URL checks (SSRF defence) and the server-level WebhookSecurityConfig.
//
// checkWebhookUrl runs on every subscription create/update and again before every delivery
// and test probe (the caller connects only to the addresses it returns, which defeats DNS
// rebinding between the check and the connection). Rules (decisions DV14, DV15):
//  - the URL parses, is https (http only with allow_http) and carries no credentials;
//  - with a non-empty allowed_url_patterns it matches one glob: in the scheme and host part
//    `*` stays within the host (never crosses `/ ? # @`), after it `*` matches anything; a
//    pattern without a path allows every path;
//  - the host resolves (getaddrinfo, so /etc/hosts counts: `localhost` is loopback) and no
//    address falls in blocked_cidr_ranges — IPv4-mapped (::ffff:0:0/96) and NAT64
//    (64:ff9b::/96) IPv6 addresses are also checked as the IPv4 address they reach, IPv4
//    addresses also as their mapped IPv6 form — nor is unspecified (0.0.0.0/8, ::), which
//    Linux connects to loopback, whatever the configuration says;
//  - at provisioning (allowUnresolved) a host that does not resolve is accepted: nothing is
//    reachable to block, and the delivery-time check refuses it until it resolves safely.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Redis } from 'ioredis';
import { ApiError, invalid } from '../errors';
import { keys } from '../store/keys';
import type { components } from '../generated/admin.types';

export type WebhookSecurityConfig = components['schemas']['WebhookSecurityConfig'];
export interface EffectiveSecurityConfig {
  blocked_cidr_ranges: string[];
  allowed_url_patterns: string[];
  allow_http: boolean;
}

export const DEFAULT_BLOCKED_CIDR_RANGES: readonly string[] = Object.freeze([
  '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8', '169.254.0.0/16', '::1/128', 'fc00::/7',
]);
/** Bounds of the PUT body (each list) and of one pattern. */
export const SECURITY_LIST_MAX = 256;
export const PATTERN_MAX_CHARS = 2048;
/** How long a provisioning / delivery check waits for DNS. */
export const DNS_TIMEOUT_MS = 3000;
/** At most this many resolved addresses are checked and returned. */
const ADDRESSES_MAX = 32;

export function defaultSecurityConfig(): EffectiveSecurityConfig {
  return { blocked_cidr_ranges: [...DEFAULT_BLOCKED_CIDR_RANGES], allowed_url_patterns: [], allow_http: false };
}

// ------------------------------------------------------------------ addresses and CIDRs
interface Ip { v: 4 | 6; n: bigint }
interface Cidr { v: 4 | 6; n: bigint; bits: number }

function parseV4(s: string): bigint | undefined {
  if (isIP(s) !== 4) return undefined;
  return s.split('.').reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
}

function parseV6(raw: string): bigint | undefined {
  const s = raw.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (isIP(s) !== 6) return undefined;
  let head = s;
  let tail4: bigint | undefined;
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    tail4 = parseV4(s.slice(lastColon + 1));
    if (tail4 === undefined) return undefined;
    head = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const [l, r] = head.includes('::') ? head.split('::') : [head, undefined];
  const left = l ? l.split(':') : [];
  const right = r !== undefined && r !== '' ? r.split(':') : [];
  const fill = r === undefined ? 0 : 8 - left.length - right.length;
  const groups = [...left, ...Array(fill).fill('0'), ...right];
  if (groups.length !== 8) return undefined;
  let n = groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
  if (tail4 !== undefined) n = (n & ~0xffffffffn) | tail4;
  return n;
}

export function parseIp(s: string): Ip | undefined {
  const v4 = parseV4(s);
  if (v4 !== undefined) return { v: 4, n: v4 };
  const v6 = parseV6(s);
  return v6 === undefined ? undefined : { v: 6, n: v6 };
}

export function parseCidr(raw: string): Cidr | undefined {
  if (typeof raw !== 'string' || raw.length > 64) return undefined;
  const [addr, bitsRaw, extra] = raw.trim().split('/');
  if (extra !== undefined) return undefined;
  const ip = parseIp(addr);
  if (!ip) return undefined;
  const width = ip.v === 4 ? 32 : 128;
  if (bitsRaw !== undefined && !/^\d{1,3}$/.test(bitsRaw)) return undefined;
  const bits = bitsRaw === undefined ? width : Number(bitsRaw);
  if (bits > width) return undefined;
  return { v: ip.v, n: ip.n, bits };
}

function inCidr(ip: Ip, c: Cidr): boolean {
  if (ip.v !== c.v) return false;
  const shift = BigInt((ip.v === 4 ? 32 : 128) - c.bits);
  return ip.n >> shift === c.n >> shift;
}

const MAPPED_V4 = parseCidr('::ffff:0:0/96')!;
const NAT64_V4 = parseCidr('64:ff9b::/96')!;
const ALWAYS_BLOCKED = ['0.0.0.0/8', '::/128'].map((c) => parseCidr(c)!);

/** The forms under which one address is checked (itself plus its IPv4/IPv6 twin). */
function forms(ip: Ip): Ip[] {
  if (ip.v === 4) return [ip, { v: 6, n: (0xffffn << 32n) | ip.n }];
  if (inCidr(ip, MAPPED_V4) || inCidr(ip, NAT64_V4)) return [ip, { v: 4, n: ip.n & 0xffffffffn }];
  return [ip];
}

/** The blocked range an address falls in (its literal text), or undefined. */
export function blockedBy(address: string, ranges: readonly string[]): string | undefined {
  const ip = parseIp(address);
  if (!ip) return 'unparsable address';
  const fs = forms(ip);
  for (const c of ALWAYS_BLOCKED) if (fs.some((f) => inCidr(f, c))) return 'unspecified address';
  for (const r of ranges) {
    const c = parseCidr(r);
    if (c && fs.some((f) => inCidr(f, c))) return r;
  }
  return undefined;
}

// ------------------------------------------------------------------ URL patterns
const PATTERN_RE = /^([a-z*][a-z0-9+.*-]*:\/\/)([^/?#]+)(.*)$/is;
const escapeRe = (s: string) => s.replace(/[.+?^${}()|[\]\\/]/g, '\\$&');

export function patternRegex(pattern: string): RegExp | undefined {
  const m = PATTERN_RE.exec(pattern.trim());
  if (!m) return undefined;
  const head = (m[1] + m[2]).toLowerCase();
  const rest = m[3] === '' ? '/*' : m[3];
  const re = escapeRe(head).replace(/\*/g, '[^/?#@]*') + escapeRe(rest).replace(/\*/g, '.*');
  return new RegExp(`^${re}$`, 's');
}

export function urlAllowed(href: string, patterns: readonly string[]): boolean {
  if (patterns.length === 0) return true;
  return patterns.some((p) => patternRegex(p)?.test(href) ?? false);
}

// ------------------------------------------------------------------ the config
/** Validates a PUT body and fills the spec defaults for omitted properties (PUT replaces
 *  the whole object; an omitted list means its default, not "empty"). */
export function normalizeSecurityConfig(body: Record<string, unknown>): EffectiveSecurityConfig {
  const out = defaultSecurityConfig();
  const list = (name: 'blocked_cidr_ranges' | 'allowed_url_patterns'): string[] | undefined => {
    const v = body[name];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalid(`${name} must be an array of strings`);
    if (v.length > SECURITY_LIST_MAX) throw invalid(`${name} holds at most ${SECURITY_LIST_MAX} entries`);
    return [...new Set((v as string[]).map((x) => x.trim()))];
  };
  const cidrs = list('blocked_cidr_ranges');
  if (cidrs) {
    for (const c of cidrs) if (!parseCidr(c)) throw invalid(`blocked_cidr_ranges: "${c.slice(0, 80)}" is not an IPv4 or IPv6 CIDR range (e.g. 10.0.0.0/8, fc00::/7)`);
    out.blocked_cidr_ranges = cidrs;
  }
  const patterns = list('allowed_url_patterns');
  if (patterns) {
    for (const p of patterns) {
      if (p.length === 0 || p.length > PATTERN_MAX_CHARS || !patternRegex(p)) {
        throw invalid(`allowed_url_patterns: "${p.slice(0, 80)}" must be a URL glob of at most ${PATTERN_MAX_CHARS} characters with a scheme and host, e.g. https://*.example.com/*`);
      }
    }
    out.allowed_url_patterns = patterns;
  }
  if (body.allow_http !== undefined) {
    if (typeof body.allow_http !== 'boolean') throw invalid('allow_http must be a boolean');
    out.allow_http = body.allow_http;
  }
  return out;
}

/** The stored configuration (spec defaults when none was ever PUT). A stored value that
 *  does not parse fails the check (500) rather than silently loosening it. */
export async function loadWebhookSecurityConfig(redis: Redis): Promise<EffectiveSecurityConfig> {
  const raw = await redis.get(keys.webhookSecurityConfig());
  if (raw === null) return defaultSecurityConfig();
  try {
    return normalizeSecurityConfig(JSON.parse(raw) as Record<string, unknown>);
  } catch (e) {
    throw new Error(`stored webhook security config is unreadable: ${(e as Error).message}`);
  }
}

export async function saveWebhookSecurityConfig(redis: Redis, cfg: EffectiveSecurityConfig): Promise<void> {
  await redis.set(keys.webhookSecurityConfig(), JSON.stringify(cfg));
}

// ------------------------------------------------------------------ the check
const urlInvalid = (why: string) => new ApiError('WEBHOOK_URL_INVALID', `Webhook URL rejected: ${why}`);

async function resolveHost(host: string): Promise<string[] | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const found = await Promise.race([
      lookup(host, { all: true, verbatim: true }),
      new Promise<undefined>((r) => { timer = setTimeout(() => r(undefined), DNS_TIMEOUT_MS); }),
    ]);
    if (!found || found.length === 0) return undefined;
    return [...new Set(found.map((a) => a.address))].slice(0, ADDRESSES_MAX);
  } catch {
    return undefined; // ENOTFOUND, EAI_AGAIN, ENODATA ...
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Throws ApiError WEBHOOK_URL_INVALID (400) when the URL may not be used; else returns the
 * parsed URL and the vetted addresses the caller must connect to (empty only with
 * `allowUnresolved` and a host that did not resolve).
 */
export async function checkWebhookUrl(
  url: string, cfg: EffectiveSecurityConfig | WebhookSecurityConfig, opts: { allowUnresolved?: boolean } = {},
): Promise<{ url: URL; addresses: string[] }> {
  const c: EffectiveSecurityConfig = {
    blocked_cidr_ranges: cfg.blocked_cidr_ranges ?? [...DEFAULT_BLOCKED_CIDR_RANGES],
    allowed_url_patterns: cfg.allowed_url_patterns ?? [],
    allow_http: cfg.allow_http ?? false,
  };
  if (typeof url !== 'string' || url.length === 0 || url.length > 2048) throw urlInvalid('must be 1-2048 characters');
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw urlInvalid('not an absolute URL');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw urlInvalid(`scheme ${u.protocol.replace(':', '')} is not https`);
  if (u.protocol === 'http:' && !c.allow_http) throw urlInvalid('must use https (the webhook security config does not allow http)');
  if (u.username || u.password) throw urlInvalid('must not carry credentials (use custom headers instead)');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (host === '') throw urlInvalid('has no host');
  if (!urlAllowed(u.href, c.allowed_url_patterns)) throw urlInvalid('matches none of the allowed_url_patterns');

  const literal = isIP(host) !== 0;
  const addresses = literal ? [host] : await resolveHost(host);
  if (!addresses) {
    if (opts.allowUnresolved) return { url: u, addresses: [] };
    throw urlInvalid(`host ${host} does not resolve`);
  }
  for (const a of addresses) {
    if (blockedBy(a, c.blocked_cidr_ranges)) {
      throw urlInvalid(literal ? 'the address is in a blocked range' : `host ${host} resolves to an address in a blocked range`);
    }
  }
  return { url: u, addresses };
}
