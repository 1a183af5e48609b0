// Choosing a node for each instance (Eucalyptus cc schedule_instance_*): GREEDY fills the first node
// that fits, ROUNDROBIN rotates the starting node, POWERSAVE packs onto nodes that are already busy
// (Eucalyptus also powers idle nodes down and wakes them on demand; Mallee does not power hosts off).
import type { VmType } from '@mallee/wire';

export type SchedPolicy = 'GREEDY' | 'ROUNDROBIN' | 'POWERSAVE';

export interface Room {
  cores: number;
  memoryMiB: number;
  diskGiB: number;
}

export interface Candidate {
  node: string;
  /** What is still free, after launches in flight; decremented as instances are placed. */
  free: Room;
  /** Runs (or is about to run) at least one instance. */
  busy: boolean;
}

export function fits(free: Room, t: VmType): boolean {
  return t.cores <= free.cores && t.memoryMiB <= free.memoryMiB && t.diskGiB <= free.diskGiB;
}

/** How many instances of a type fit in a room (Eucalyptus's per-type availability). */
export function fitCount(room: Room, t: VmType): number {
  const n = Math.min(
    Math.floor(room.cores / t.cores),
    Math.floor(room.memoryMiB / t.memoryMiB),
    t.diskGiB > 0 ? Math.floor(room.diskGiB / t.diskGiB) : Number.POSITIVE_INFINITY,
  );
  return Math.max(0, n);
}

export class Scheduler {
  /** ROUNDROBIN: index of the node the next instance starts looking at; kept across calls. */
  private next = 0;

  constructor(private policy: SchedPolicy) {}

  /** The zone's policy changed (cloud property cluster.schedulingpolicy): ROUNDROBIN keeps its position. */
  setPolicy(policy: SchedPolicy): void {
    this.policy = policy;
  }

  get current(): SchedPolicy {
    return this.policy;
  }

  /**
   * Place each type in order on one of the candidates (mutating their free room), or undefined
   * where none fits. Candidates come in registration order.
   */
  place(candidates: Candidate[], types: readonly VmType[]): (string | undefined)[] {
    return types.map((t) => take(this.choose(candidates, t), t));
  }

  /** One instance on the first of these candidates it fits (a pinned launch), or undefined. */
  placeOn(candidates: Candidate[], t: VmType): string | undefined {
    return take(candidates.find((x) => fits(x.free, t)), t);
  }

  private choose(candidates: Candidate[], t: VmType): Candidate | undefined {
    const n = candidates.length;
    if (n === 0) return undefined;
    switch (this.policy) {
      case 'GREEDY':
        return candidates.find((c) => fits(c.free, t));
      case 'POWERSAVE':
        return candidates.find((c) => c.busy && fits(c.free, t)) ?? candidates.find((c) => fits(c.free, t));
      case 'ROUNDROBIN': {
        for (let i = 0; i < n; i++) {
          const idx = (this.next + i) % n;
          const c = candidates[idx]!;
          if (fits(c.free, t)) {
            this.next = (idx + 1) % n;
            return c;
          }
        }
        return undefined;
      }
    }
  }
}

/** The candidate's room is taken by one instance of the type (a chosen candidate becomes busy). */
function take(c: Candidate | undefined, t: VmType): string | undefined {
  if (!c) return undefined;
  c.free.cores -= t.cores;
  c.free.memoryMiB -= t.memoryMiB;
  c.free.diskGiB -= t.diskGiB;
  c.busy = true;
  return c.node;
}
