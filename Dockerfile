# syntax=docker/dockerfile:1
# One image for every hookmesh service: the command names the compiled entry point, e.g.
#   docker run hookmesh dist/services/tasks/src/main.js
# (the services share one dependency tree and one build, so one image is one build, one scan
# and one tag to roll out). The `agent` target adds git and bubblewrap, which only the agent
# worker needs, so that no other service carries them.
#
# Node 24: the Active LTS line (supported until April 2028); Node 20 left support in April
# 2026 and 22 leaves it in April 2027. The code still runs and is tested on Node 20 (engines).
ARG NODE_IMAGE=node:24-bookworm-slim

# Every package.json of the repository (each workspace's, whichever exist) and the lock,
# alone, so that the dependency layers below are rebuilt only when one of them changes.
FROM ${NODE_IMAGE} AS manifests
WORKDIR /context
COPY . .
RUN mkdir /manifests \
 && find . -name package.json -not -path "*/node_modules/*" -exec cp --parents {} /manifests/ \; \
 && cp package-lock.json /manifests/

FROM ${NODE_IMAGE} AS base
# tini as PID 1: forwards SIGTERM to Node and reaps orphaned children (the agent's runs).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=manifests /manifests/ ./

# Compiles TypeScript with the development dependencies; nothing of this stage but dist/ ships.
FROM base AS build
# No install scripts: none is needed to compile (package.json "allowScripts").
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts scripts
COPY gen gen
COPY kit kit
COPY gateway gateway
COPY cli cli
COPY services services
RUN npm run build

FROM base AS runtime
ENV NODE_ENV=production
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist dist
COPY deploy/docker/healthcheck.mjs deploy/docker/healthcheck.mjs
# HOOKMESH_HOME for the development identities: a volume mounted here starts owned by the user.
RUN mkdir /hookmesh && chown 1000:1000 /hookmesh
# The `node` user of the Node images, by number so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
# Each service's admin port serves GET /livez (gRPC port + 1000); the script finds the port
# from the entry point PID 1 runs, or takes it as an argument. Node's fetch: no curl here.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "/app/deploy/docker/healthcheck.mjs"]
ENTRYPOINT ["/usr/bin/tini", "--", "node"]
CMD ["dist/services/tasks/src/main.js"]

# The agent worker: git to check out repositories, bubblewrap to sandbox every run.
# To run Claude Code (AGENT_RUNNER=claude), build on this target:
#   FROM hookmesh-agent
#   USER root
#   RUN npm install -g @anthropic-ai/claude-code && npm cache clean --force
#   USER 1000:1000
# and give it ANTHROPIC_API_KEY through a route's allowed_env (README: Agents).
FROM runtime AS agent
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap ca-certificates git \
 && rm -rf /var/lib/apt/lists/*
USER 1000:1000
CMD ["dist/services/agent/src/main.js"]

# The default target: every service but the agent worker.
FROM runtime
