# One image for every hookmesh service; the compose file (or a Kubernetes manifest) picks the
# service by its entry point.

# The dashboard's web UI is built here, with the dev dependencies Vite needs; the image takes
# only its dist/. Every workspace's manifest is copied because npm ci installs the whole tree.
FROM node:20-bookworm-slim AS web
WORKDIR /app
COPY package.json package-lock.json ./
COPY kit/package.json kit/
COPY gateway/package.json gateway/
COPY services/tasks/package.json services/tasks/
COPY services/agent/package.json services/agent/
COPY services/github/package.json services/github/
COPY services/slack/package.json services/slack/
COPY services/jira/package.json services/jira/
COPY services/sentry/package.json services/sentry/
COPY services/dashboard/package.json services/dashboard/
COPY services/dashboard/web/package.json services/dashboard/web/
COPY cli/package.json cli/
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY gen gen
COPY services/dashboard/web services/dashboard/web
RUN npm run build:web

FROM node:20-bookworm-slim
# bubblewrap: the agent worker runs every agent in a sandbox (AGENT_SANDBOX).
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY kit/package.json kit/
COPY gateway/package.json gateway/
COPY services/tasks/package.json services/tasks/
COPY services/agent/package.json services/agent/
COPY services/github/package.json services/github/
COPY services/slack/package.json services/slack/
COPY services/jira/package.json services/jira/
COPY services/sentry/package.json services/sentry/
COPY services/dashboard/package.json services/dashboard/
COPY services/dashboard/web/package.json services/dashboard/web/
COPY cli/package.json cli/
# --ignore-scripts: the root's prepare builds the UI, which needs the dev dependencies left out
# here; the web stage built it.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY gen gen
COPY kit kit
COPY gateway gateway
COPY services services
COPY cli cli
COPY --from=web /app/services/dashboard/web/dist services/dashboard/web/dist
ENV NODE_ENV=production
USER node
ENTRYPOINT ["node", "--import", "tsx"]
