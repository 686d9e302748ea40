// Placeholder until the client library lands: it must never load the native binary.
export function connect() {
  throw new Error('cluso-ws/client: connect() is not implemented yet')
}
