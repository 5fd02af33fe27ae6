import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/test/**/*.test.ts", "e2e/**/*.test.ts"],
    exclude: ["**/node_modules/**"],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Integration tests start servers on port 0 and use unique Redis prefixes, so files
    // can run side by side; two workers fit the two-core machines this runs on.
    maxWorkers: 2,
  },
});
