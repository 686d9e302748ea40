'use strict'
// `npm run lint`: the package's hand-written JavaScript (lib/, client/, index.js), scripts/ and
// examples/.
const js = require('@eslint/js')
const globals = require('globals')

module.exports = [
  js.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      ecmaVersion: 2023,
      globals: { ...globals.node },
    },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: {
      sourceType: 'module',
      ecmaVersion: 2023,
      globals: { ...globals.node },
    },
  },
  {
    // The client runs in browsers and in Node: only what both have.
    files: ['client/**'],
    languageOptions: {
      globals: { ...globals['shared-node-browser'] },
    },
  },
  {
    // the demo's page
    files: ['examples/demo/public/**'],
    languageOptions: {
      globals: { ...globals.browser },
    },
  },
]
