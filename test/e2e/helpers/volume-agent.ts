// The test guest's volume agent (its user data; the busybox test image runs user data that starts
// with #!), shared by the EBS guest suite and the snapshot benchmark.

/**
 * The guest's volume agent (user data): for every hot-plugged disk whose serial is a volume id it
 * mounts the ext2 filesystem and prints the checksum of every file, or, on an empty volume, makes the
 * filesystem and writes 8 MiB of random data; at a volume's second appearance it also writes 11 MiB
 * more (1% of 1 GiB). It unmounts before saying "done", so the volume can be detached.
 */
export const VOLUME_AGENT = `#!/bin/sh
echo "mallee-vol: agent running"
while true; do
  for s in /sys/block/vd*/serial; do
    [ -f "$s" ] || continue
    dev=$(basename $(dirname $s)); ser=$(cat $s)
    case "$ser" in vol-*) ;; *) continue ;; esac
    [ -e /run/present-$dev-$ser ] && continue
    : > /run/present-$dev-$ser
    n=$(( $(cat /run/count-$ser 2>/dev/null || echo 0) + 1 )); echo $n > /run/count-$ser
    echo "mallee-vol: appeared $ser $dev $n"
    m=/mnt/$ser; mkdir -p $m
    if mount -t ext2 /dev/$dev $m 2>/dev/null; then
      for f in $m/data $m/extra; do [ -f $f ] && echo "mallee-vol: read $ser $(basename $f) $(md5sum < $f | cut -c1-32)"; done
      if [ $n -eq 2 ] && [ ! -f $m/extra ]; then
        dd if=/dev/urandom of=$m/extra bs=1M count=11 2>/dev/null; sync
        echo "mallee-vol: wrote $ser extra $(md5sum < $m/extra | cut -c1-32)"
      fi
      umount $m
    else
      mke2fs -q /dev/$dev && mount -t ext2 /dev/$dev $m && dd if=/dev/urandom of=$m/data bs=1M count=8 2>/dev/null && sync &&
        echo "mallee-vol: wrote $ser data $(md5sum < $m/data | cut -c1-32)"
      umount $m
    fi
    sync
    echo "mallee-vol: done $ser $n"
  done
  for p in /run/present-*; do
    [ -e "$p" ] || continue
    d=\${p#/run/present-}; d=\${d%%-vol-*}
    [ -e /sys/block/$d ] || rm -f $p
  done
  usleep 200000
done
`;
