// The Dockerfile and docker-compose.yml cannot be built on the development machines (no
// Docker daemon; decision DB4), so their load-bearing properties are checked as text:
// multi-stage, non-root, health-checked on /readyz, the spec bundle from a named build
// context (never copied into the repository), Redis with AOF, the admin port on loopback.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../src/config';

const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
/** instructions with their continuation lines joined, comments dropped */
const instructions = dockerfile.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const stages = () => {
  const out: string[][] = [];
  for (const i of instructions) {
    if (/^FROM /i.test(i)) out.push([]);
    out[out.length - 1]?.push(i);
  }
  return out;
};

describe('Dockerfile', () => {
  it('is multi-stage; the final stage runs the build as a non-root user', () => {
    const s = stages();
    expect(s.length).toBeGreaterThanOrEqual(2);
    const final = s[s.length - 1];
    expect(final.some((i) => /^RUN npm run build/.test(i))).toBe(false);
    expect(s.some((st) => st.some((i) => /^RUN npm run build$/.test(i)))).toBe(true);
    const user = final.filter((i) => /^USER /.test(i)).pop();
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^USER (root|0)(:|$)/);
    expect(final.find((i) => /^ENTRYPOINT /.test(i))).toContain('"src/cli.js"');
    expect(final.some((i) => /^COPY --from=build \/app\/dist /.test(i))).toBe(true);
    expect(final.some((i) => /NODE_ENV=production/.test(i))).toBe(true);
    expect(final.some((i) => /CYCLES_HOST=0\.0\.0\.0/.test(i))).toBe(true);
  });

  it('health-checks /readyz', () => {
    const hc = instructions.find((i) => /^HEALTHCHECK /.test(i));
    expect(hc).toMatch(/\/readyz/);
  });

  it('takes the spec bundle from the named build context "specs", never from the repository', () => {
    expect(instructions.some((i) => /^COPY --from=specs /.test(i))).toBe(true);
    expect(existsSync(join(REPO_ROOT, 'specs', 'cycles-protocol-v0.yaml'))).toBe(false);
    const ignore = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const p of ['node_modules', 'dist', 'data', 'src/generated', '.git']) expect(ignore).toContain(p);
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8'));

  it('runs Redis with AOF on a volume, reachable only on the compose network', () => {
    const redis = compose.services.redis;
    expect(redis.command.join(' ')).toMatch(/--appendonly yes/);
    expect(redis.volumes[0]).toMatch(/:\/data$/);
    expect(redis.ports).toBeUndefined();
    expect(redis.healthcheck.test).toContain('ping');
  });

  it('builds with the specs context, points at that Redis, requires the secrets, keeps the admin port on loopback', () => {
    const c = compose.services.cycles;
    expect(c.build.additional_contexts.specs).toBe('../shared/specs/cycles-protocol');
    expect(c.environment.REDIS_URL).toBe('redis://redis:6379/0');
    expect(c.environment.ADMIN_API_KEY).toMatch(/^\$\{ADMIN_API_KEY:\?/);
    expect(c.environment.CYCLES_WEBHOOK_SECRET_KEY).toMatch(/^\$\{CYCLES_WEBHOOK_SECRET_KEY:\?/);
    expect(c.ports).toContain('127.0.0.1:7979:7979');
    expect(c.depends_on.redis.condition).toBe('service_healthy');
    // longer than the default 10 s drain (CYCLES_SHUTDOWN_TIMEOUT_MS, DB1)
    expect(parseInt(c.stop_grace_period, 10)).toBeGreaterThan(10);
  });
});
