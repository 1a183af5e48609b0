// The request id of the user request being served, carried through async calls: the EC2 and wire
// layers run each handler inside withRequestId(), and the wire client sends currentRequestId() as
// x-mallee-request-id, so the clc, cc and nc log lines of one user request share one id.
import { AsyncLocalStorage } from 'node:async_hooks';

const storage = new AsyncLocalStorage<{ requestId: string }>();

export function withRequestId<T>(requestId: string, fn: () => T): T {
  return storage.run({ requestId }, fn);
}

/** The id of the request whose handler (or whatever it started) is running now, if any. */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}

/** A pino `mixin`: every log line written while serving a request carries its requestId. */
export function requestIdMixin(): { requestId?: string } {
  const requestId = currentRequestId();
  return requestId === undefined ? {} : { requestId };
}
