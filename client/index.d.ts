/** Placeholder until the client library lands: always throws. */
export declare function connect(...args: unknown[]): never
