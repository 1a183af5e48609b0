// Images the account may launch (its own, public ones and those shared with it): details, make
// public/private, deregister, and launch (opens the instances page's wizard).
import { useState } from 'preact/hooks';
import { ec2, list, str } from '../api/ec2.js';
import type { PageProps } from '../app.js';
import { ActionButton, ErrorNote, PageHeader, Table, useLoad } from '../components/ui.js';

export function Images({ session }: PageProps) {
  const images = useLoad(async () => list((await ec2(session, 'DescribeImages', { 'ExecutableBy.1': 'self' })).imagesSet).map((i) => ({
    id: str(i.imageId), name: str(i.name), location: str(i.imageLocation), type: str(i.imageType), state: str(i.imageState), owner: str(i.imageOwnerId), isPublic: str(i.isPublic) === 'true', kernel: str(i.kernelId), ramdisk: str(i.ramdiskId), arch: str(i.architecture),
  })), [session]);
  const [sel, setSel] = useState<string>();
  const img = images.data?.find((i) => i.id === sel);
  const mine = img?.owner === session.accountId;
  return (
    <section>
      <PageHeader title="Images" />
      <p>Register images with <code>euca-register</code> or <code>aws ec2 register-image</code> after uploading a bundle.</p>
      <ErrorNote error={images.error} />
      <div class="toolbar">
        <ActionButton disabled={!mine} run={async () => (await ec2(session, 'ModifyImageAttribute', { ImageId: sel, [img?.isPublic ? 'LaunchPermission.Remove.1.Group' : 'LaunchPermission.Add.1.Group']: 'all' }), await images.reload())}>
          {img?.isPublic ? 'Make private' : 'Make public'}
        </ActionButton>
        <ActionButton danger disabled={!mine} run={async () => (await ec2(session, 'DeregisterImage', { ImageId: sel }), setSel(undefined), await images.reload())}>Deregister</ActionButton>
      </div>
      <Table caption="Images" rows={images.data ?? []} rowKey={(i) => i.id} selected={sel} onSelect={setSel} empty={images.data ? 'No images.' : 'Loading…'}
        columns={[
          { label: 'Image', cell: (i) => <code>{i.id}</code> },
          { label: 'Name', cell: (i) => i.name },
          { label: 'Type', cell: (i) => i.type },
          { label: 'State', cell: (i) => i.state },
          { label: 'Visibility', cell: (i) => (i.isPublic ? 'public' : 'private') },
          { label: 'Owner', cell: (i) => (i.owner === session.accountId ? 'you' : i.owner) },
          { label: 'Kernel / ramdisk', cell: (i) => [i.kernel, i.ramdisk].filter(Boolean).join(' / ') },
          { label: 'Manifest', cell: (i) => i.location },
        ]} />
    </section>
  );
}
