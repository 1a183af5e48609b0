// @mallee/vnet: what the clc, cc and nc share about MANAGED networking — address arithmetic of the
// per-group networks, the names of bridges and tunnel devices, and running ip/iptables commands.
export * from './addressing.js';
export * from './links.js';
export * from './run.js';
