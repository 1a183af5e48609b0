// MANAGED networking in the clc: per-group networks, private and public addresses, the address
// actions, and keeping each cluster's network in step.
export { networkMigration } from './migration.js';
export { networkPlan, type NetworkPlan } from './plan.js';
export { assignLaunchAddresses, releaseAddressesOfGoneInstances } from './allocate.js';
export { addressActions } from './addresses.js';
export { NetworkSync } from './sync.js';
