# One image for every hookmesh service; the compose file (or a Kubernetes manifest) picks the
# service by its entry point.
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
COPY cli/package.json cli/
RUN npm ci --omit=dev --no-audit --no-fund
COPY gen gen
COPY kit kit
COPY gateway gateway
COPY services services
COPY cli cli
ENV NODE_ENV=production
USER node
ENTRYPOINT ["node", "--import", "tsx"]
