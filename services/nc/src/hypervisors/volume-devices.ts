// Guest device names for hot-plugged volumes: the user's /dev/sdf or /dev/xvdf becomes virtio's vdf
// (Eucalyptus did the same for KVM); when that name is taken, the next free one after it.

const DEVICE = /^\/dev\/(?:sd|xvd|vd|hd)([a-z]{1,2})$/;

export function isVolumeDevice(device: string): boolean {
  return DEVICE.test(device);
}

export function guestDevice(requested: string, taken: readonly string[]): string {
  const m = DEVICE.exec(requested);
  const used = new Set(taken);
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const start = m && m[1]!.length === 1 ? letters.indexOf(m[1]!) : 5;
  for (let i = 0; i < letters.length; i++) {
    const name = `vd${letters[(start + i) % letters.length]}`;
    if (!used.has(name)) return name;
  }
  throw new Error('no free virtio device name left in this guest');
}
