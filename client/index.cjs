// Placeholder until the client library lands: it must never load the native binary.
function connect() {
  throw new Error('cluso-ws/client: connect() is not implemented yet')
}
module.exports = { connect }
