// @mallee/nc: the Node Controller daemon and the Hypervisor interface its drivers implement.
export * from './hypervisor.js';
export { startDaemon, nodeKeyFile, type StartOptions, type RunningDaemon } from './daemon.js';
export { buildServer, type NcServerDeps } from './server.js';
export { NodeController, effectiveCapacity, CONSOLE_TAIL_BYTES, type NodeLimits } from './node-controller.js';
export { SimulatedHypervisor } from './hypervisors/simulated.js';
export { loadHypervisor, HypervisorUnavailableError } from './hypervisors/index.js';
