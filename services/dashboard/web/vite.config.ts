import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

/**
 * Builds the dashboard's web UI into dist/, which the dashboard service serves at
 * http://127.0.0.1:8070. Everything is bundled (no CDN, no web fonts) so that it works offline.
 * `npm run dev -w @hookmesh/dashboard-web` serves the sources with hot reload and forwards the
 * API and the sign-in to a dashboard running on DASHBOARD_URL (default http://127.0.0.1:8070).
 */
const dashboard = process.env.DASHBOARD_URL ?? "http://127.0.0.1:8070";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // uPlot and React together are ~250 kB; one chunk loads once and is cached.
    chunkSizeWarningLimit: 1000,
  },
  server: {
    // The dashboard accepts calls from its own origin only; changeOrigin rewrites the Host, and
    // DASHBOARD_ALLOWED_ORIGINS=http://localhost:5173 lets the dev server's Origin in.
    proxy: {
      "/api": { target: dashboard, changeOrigin: true },
      "/login": { target: dashboard, changeOrigin: true },
      "/logout": { target: dashboard, changeOrigin: true },
    },
  },
});
