# syntax=docker/dockerfile:1
# cycles-server production image (decision DB4): multi-stage, runs the tsc build (npm run
# build) on plain node as the unprivileged `node` user, health-checked on /readyz.
#
# The spec bundle is not part of this repository; pass it as a named build context:
#   docker build --build-context specs=../shared/specs/cycles-protocol -t cycles-server .
# (docker-compose.yml does the same with additional_contexts). It is needed at build time
# (codegen) and kept in the image for `cycles evidence verify` and `cycles conformance`.
#
# Redis is external (REDIS_URL); the image has no redis-server, so it never starts an
# embedded one. See the README's production checklist.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
COPY --from=specs . /specs/cycles-protocol/
ENV CYCLES_SPECS_DIR=/specs/cycles-protocol
# codegen (verified against specs/manifest.json) + tsc into dist/
RUN npm run build

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    CYCLES_HOST=0.0.0.0 \
    CYCLES_RUNTIME_PORT=7878 \
    CYCLES_ADMIN_PORT=7979 \
    CYCLES_DATA_DIR=/data \
    CYCLES_SPECS_DIR=/specs/cycles-protocol
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./
COPY --from=build /specs/cycles-protocol /specs/cycles-protocol
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 7878 7979
# /readyz answers 200 once Redis answers PING (503 while it does not)
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.CYCLES_RUNTIME_PORT + '/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains requests in flight for up to CYCLES_SHUTDOWN_TIMEOUT_MS (10 s): give
# `docker stop` more than that (docker stop -t 30; compose: stop_grace_period)
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "src/cli.js"]
CMD ["serve"]
