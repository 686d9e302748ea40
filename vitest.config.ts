import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.spec.ts'],
    // one process per spec file: the native addon is loaded once per process, never shared
    // between worker threads of the test runner
    pool: 'forks',
    testTimeout: 15_000,
    hookTimeout: 15_000,
    teardownTimeout: 5_000,
    // fail on a test that leaves unhandled errors behind (a listener throwing inside emit, a
    // rejected promise from a socket): those are exactly the bugs these specs look for
    dangerouslyIgnoreUnhandledErrors: false,
    // the addon logs expected failures (throwing mocks) at warn; CLUSO_WS_LOG=warn shows them
    env: { CLUSO_WS_LOG: process.env.CLUSO_WS_LOG ?? 'off' },
  },
})
