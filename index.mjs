// ESM entry: the same binding as `require('cluso-ws')` (one instance, no dual-package hazard).
export * from './index.js'
export { default } from './index.js'
