// @mallee/wire: the signed internal protocol (client, fastify plugin) and every operation's contract.
export * from './codec.js';
export * from './protocol.js';
export * from './client.js';
export * from './plugin.js';
export * from './envelope.js';
export * from './keys.js';
export * from './ops/index.js';
export * from './secrets.js';
