"""boto3 against Walrus: versioning, ACLs across accounts, ranges and conditionals, copy, multipart,
multi-delete, metadata and presigned PUT. Exits non-zero on the first failed check; prints OK."""
import hashlib
import sys
import urllib.error
import urllib.request

import boto3
from botocore.client import Config
from botocore.exceptions import ClientError

url, a_key, a_secret, a_id, b_key, b_secret, b_id = sys.argv[1:8]
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
alice = boto3.client("s3", endpoint_url=url, aws_access_key_id=a_key, aws_secret_access_key=a_secret, region_name="mallee", config=cfg)
bob = boto3.client("s3", endpoint_url=url, aws_access_key_id=b_key, aws_secret_access_key=b_secret, region_name="mallee", config=cfg)


def code_of(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{fn.__name__} succeeded, expected an error")


def md5(b):
    return hashlib.md5(b).hexdigest()


B = "boto3-bucket"
alice.create_bucket(Bucket=B)

# user metadata, content type, ETag = MD5
body = b"hello walrus " * 100
r = alice.put_object(Bucket=B, Key="meta.txt", Body=body, ContentType="text/plain", Metadata={"colour": "blue", "Shape": "round"})
assert r["ETag"] == f'"{md5(body)}"', r["ETag"]
h = alice.head_object(Bucket=B, Key="meta.txt")
assert h["ContentType"] == "text/plain", h
assert h["Metadata"] == {"colour": "blue", "shape": "round"}, h["Metadata"]

# ranges
g = alice.get_object(Bucket=B, Key="meta.txt", Range="bytes=6-11")
assert g["Body"].read() == b"walrus" and g["ContentRange"] == f"bytes 6-11/{len(body)}", g["ContentRange"]
assert alice.get_object(Bucket=B, Key="meta.txt", Range="bytes=-5")["Body"].read() == body[-5:]
assert alice.get_object(Bucket=B, Key="meta.txt", Range=f"bytes={len(body) - 3}-")["Body"].read() == body[-3:]
assert code_of(alice.get_object, Bucket=B, Key="meta.txt", Range=f"bytes={len(body)}-") == ("InvalidRange", 416)

# conditionals
etag = h["ETag"]
assert alice.get_object(Bucket=B, Key="meta.txt", IfMatch=etag)["Body"].read() == body
assert code_of(alice.get_object, Bucket=B, Key="meta.txt", IfMatch='"nope"') == ("PreconditionFailed", 412)
assert code_of(alice.get_object, Bucket=B, Key="meta.txt", IfNoneMatch=etag)[1] == 304
assert code_of(alice.get_object, Bucket=B, Key="meta.txt", IfModifiedSince=h["LastModified"])[1] == 304
assert code_of(alice.get_object, Bucket=B, Key="meta.txt", IfUnmodifiedSince="Mon, 01 Jan 2001 00:00:00 GMT") == ("PreconditionFailed", 412)

# copy: metadata kept (COPY) or replaced (REPLACE); copying onto itself unchanged is refused
alice.copy_object(Bucket=B, Key="copy.txt", CopySource={"Bucket": B, "Key": "meta.txt"})
assert alice.head_object(Bucket=B, Key="copy.txt")["Metadata"] == {"colour": "blue", "shape": "round"}
alice.copy_object(Bucket=B, Key="copy2.txt", CopySource=f"{B}/meta.txt", MetadataDirective="REPLACE", Metadata={"new": "1"}, ContentType="text/x-new")
h2 = alice.head_object(Bucket=B, Key="copy2.txt")
assert h2["Metadata"] == {"new": "1"} and h2["ContentType"] == "text/x-new", h2
assert alice.get_object(Bucket=B, Key="copy2.txt")["Body"].read() == body
assert code_of(alice.copy_object, Bucket=B, Key="meta.txt", CopySource=f"{B}/meta.txt")[0] == "InvalidRequest"

# ACLs: bob is denied, then granted read on one object, then the bucket is made public-read
assert code_of(bob.get_object, Bucket=B, Key="meta.txt") == ("AccessDenied", 403)
assert code_of(bob.list_objects_v2, Bucket=B) == ("AccessDenied", 403)
assert code_of(bob.put_object, Bucket=B, Key="bob.txt", Body=b"x") == ("AccessDenied", 403)
assert code_of(bob.get_object_acl, Bucket=B, Key="meta.txt") == ("AccessDenied", 403)
acl = alice.get_object_acl(Bucket=B, Key="meta.txt")
assert acl["Owner"]["ID"] == a_id and [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"], acl
alice.put_object_acl(Bucket=B, Key="meta.txt", GrantRead=f'id="{b_id}"', GrantFullControl=f'id="{a_id}"')
assert bob.get_object(Bucket=B, Key="meta.txt")["Body"].read() == body
assert code_of(bob.get_object, Bucket=B, Key="copy.txt") == ("AccessDenied", 403)
alice.put_object_acl(Bucket=B, Key="copy.txt", ACL="public-read")
anon = urllib.request.urlopen(f"{url}/{B}/copy.txt").read()
assert anon == body
policy = alice.get_bucket_acl(Bucket=B)
policy["Grants"].append({"Grantee": {"Type": "CanonicalUser", "ID": b_id}, "Permission": "WRITE"})
alice.put_bucket_acl(Bucket=B, AccessControlPolicy={"Grants": policy["Grants"], "Owner": policy["Owner"]})
bob.put_object(Bucket=B, Key="bob.txt", Body=b"from bob")
assert code_of(alice.get_object, Bucket=B, Key="bob.txt") == ("AccessDenied", 403)  # bob owns his object
assert code_of(bob.delete_bucket, Bucket=B) == ("AccessDenied", 403)
alice.put_bucket_acl(Bucket=B, ACL="public-read")
assert any(o["Key"] == "meta.txt" for o in bob.list_objects_v2(Bucket=B)["Contents"])
assert code_of(bob.put_object, Bucket=B, Key="bob2.txt", Body=b"x") == ("AccessDenied", 403)

# Content-MD5 mismatch
assert code_of(alice.put_object, Bucket=B, Key="bad-md5", Body=b"abc", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==") == ("BadDigest", 400)
assert code_of(alice.head_object, Bucket=B, Key="bad-md5")[1] == 404

# versioning: versions, delete markers, reading an old version, suspending
V = "boto3-versions"
alice.create_bucket(Bucket=V)
assert "Status" not in alice.get_bucket_versioning(Bucket=V)
alice.put_object(Bucket=V, Key="doc", Body=b"v0")  # the 'null' version
alice.put_bucket_versioning(Bucket=V, VersioningConfiguration={"Status": "Enabled"})
assert alice.get_bucket_versioning(Bucket=V)["Status"] == "Enabled"
v1 = alice.put_object(Bucket=V, Key="doc", Body=b"v1")["VersionId"]
v2 = alice.put_object(Bucket=V, Key="doc", Body=b"v2")["VersionId"]
assert v1 != v2 and v1 != "null"
assert alice.get_object(Bucket=V, Key="doc")["Body"].read() == b"v2"
assert alice.get_object(Bucket=V, Key="doc", VersionId=v1)["Body"].read() == b"v1"
assert alice.get_object(Bucket=V, Key="doc", VersionId="null")["Body"].read() == b"v0"
d = alice.delete_object(Bucket=V, Key="doc")
assert d["DeleteMarker"] is True and d["VersionId"]
assert code_of(alice.get_object, Bucket=V, Key="doc") == ("NoSuchKey", 404)
assert "Contents" not in alice.list_objects_v2(Bucket=V)
vs = alice.list_object_versions(Bucket=V)
assert [v["VersionId"] for v in vs["Versions"]] == [v2, v1, "null"], vs["Versions"]
assert [m["VersionId"] for m in vs["DeleteMarkers"]] == [d["VersionId"]] and vs["DeleteMarkers"][0]["IsLatest"]
alice.delete_object(Bucket=V, Key="doc", VersionId=d["VersionId"])  # removing the marker restores v2
assert alice.get_object(Bucket=V, Key="doc")["Body"].read() == b"v2"
alice.delete_object(Bucket=V, Key="doc", VersionId=v2)
assert alice.get_object(Bucket=V, Key="doc")["Body"].read() == b"v1"
alice.put_bucket_versioning(Bucket=V, VersioningConfiguration={"Status": "Suspended"})
r = alice.put_object(Bucket=V, Key="doc", Body=b"s1")
assert r.get("VersionId") in (None, "null"), r
assert alice.get_object(Bucket=V, Key="doc", VersionId=v1)["Body"].read() == b"v1"
assert alice.get_object(Bucket=V, Key="doc", VersionId="null")["Body"].read() == b"s1"
assert code_of(alice.delete_bucket, Bucket=V) == ("BucketNotEmpty", 409)

# multipart: parts, UploadPartCopy, ListParts, ListMultipartUploads, Abort, Complete
part1 = b"a" * (5 * 1024 * 1024)
up = alice.create_multipart_upload(Bucket=B, Key="multi.bin", Metadata={"kind": "multi"})["UploadId"]
assert [u["UploadId"] for u in alice.list_multipart_uploads(Bucket=B)["Uploads"]] == [up]
e1 = alice.upload_part(Bucket=B, Key="multi.bin", UploadId=up, PartNumber=1, Body=part1)["ETag"]
e2 = alice.upload_part_copy(Bucket=B, Key="multi.bin", UploadId=up, PartNumber=2, CopySource={"Bucket": B, "Key": "meta.txt"}, CopySourceRange="bytes=0-4")["CopyPartResult"]["ETag"]
parts = alice.list_parts(Bucket=B, Key="multi.bin", UploadId=up)["Parts"]
assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(part1)), (2, 5)], parts
assert code_of(alice.complete_multipart_upload, Bucket=B, Key="multi.bin", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})[0] == "InvalidPartOrder"
assert code_of(alice.complete_multipart_upload, Bucket=B, Key="multi.bin", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]})[0] == "InvalidPart"
done = alice.complete_multipart_upload(Bucket=B, Key="multi.bin", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
want = hashlib.md5(bytes.fromhex(e1.strip('"')) + bytes.fromhex(e2.strip('"'))).hexdigest() + "-2"
assert done["ETag"] == f'"{want}"', (done["ETag"], want)
got = alice.get_object(Bucket=B, Key="multi.bin")
assert got["Body"].read() == part1 + b"hello" and got["Metadata"] == {"kind": "multi"}
assert code_of(alice.list_parts, Bucket=B, Key="multi.bin", UploadId=up) == ("NoSuchUpload", 404)
up2 = alice.create_multipart_upload(Bucket=B, Key="aborted.bin")["UploadId"]
alice.upload_part(Bucket=B, Key="aborted.bin", UploadId=up2, PartNumber=1, Body=b"zzz")
alice.abort_multipart_upload(Bucket=B, Key="aborted.bin", UploadId=up2)
assert "Uploads" not in alice.list_multipart_uploads(Bucket=B)
assert code_of(alice.head_object, Bucket=B, Key="aborted.bin")[1] == 404

# ListObjects v1 with marker and url encoding; multi-delete
for k in ["list/a b", "list/c+d", "list/é"]:
    alice.put_object(Bucket=B, Key=k, Body=b"1")
page = alice.list_objects(Bucket=B, Prefix="list/", MaxKeys=2)
assert page["IsTruncated"] and [c["Key"] for c in page["Contents"]] == ["list/a b", "list/c+d"], page
page2 = alice.list_objects(Bucket=B, Prefix="list/", Marker="list/c+d")
assert [c["Key"] for c in page2["Contents"]] == ["list/é"] and not page2["IsTruncated"]
deleted = alice.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "list/a b"}, {"Key": "list/c+d"}, {"Key": "list/é"}, {"Key": "never-existed"}]})
assert sorted(d["Key"] for d in deleted["Deleted"]) == sorted(["list/a b", "list/c+d", "list/é", "never-existed"]), deleted
assert "Contents" not in alice.list_objects_v2(Bucket=B, Prefix="list/")

# presigned PUT then GET
put_url = alice.generate_presigned_url("put_object", Params={"Bucket": B, "Key": "presigned.txt"}, ExpiresIn=300)
req = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
assert urllib.request.urlopen(req).status == 200
get_url = alice.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "presigned.txt"}, ExpiresIn=300)
assert urllib.request.urlopen(get_url).read() == b"presigned body"

# bucket policy: public prefix for everyone, a prefix bob may write, a prefix nobody may delete
import json
P = "boto3-policy"
alice.create_bucket(Bucket=P)
assert code_of(alice.get_bucket_policy, Bucket=P) == ("NoSuchBucketPolicy", 404)
for k in ["public/a.txt", "private/b.txt", "locked/c.txt"]:
    alice.put_object(Bucket=P, Key=k, Body=k.encode())
policy = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{P}/public/*"},
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{b_id}:root"}, "Action": ["s3:PutObject", "s3:ListBucket"], "Resource": [f"arn:aws:s3:::{P}/inbox/*", f"arn:aws:s3:::{P}"]},
    {"Effect": "Deny", "Principal": "*", "Action": "s3:Delete*", "Resource": f"arn:aws:s3:::{P}/locked/*"},
]}
assert code_of(bob.put_bucket_policy, Bucket=P, Policy=json.dumps(policy)) == ("AccessDenied", 403)
assert code_of(alice.put_bucket_policy, Bucket=P, Policy='{"Statement": [{"Effect": "Maybe"}]}')[0] == "MalformedPolicy"
assert code_of(alice.put_bucket_policy, Bucket=P, Policy=json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other-bucket/*"}]}))[0] == "MalformedPolicy"
alice.put_bucket_policy(Bucket=P, Policy=json.dumps(policy))
assert json.loads(alice.get_bucket_policy(Bucket=P)["Policy"]) == policy
assert urllib.request.urlopen(f"{url}/{P}/public/a.txt").read() == b"public/a.txt"
try:
    urllib.request.urlopen(f"{url}/{P}/private/b.txt")
    raise AssertionError("anonymous read of a private object")
except urllib.error.HTTPError as e:
    assert e.code == 403
bob.put_object(Bucket=P, Key="inbox/from-bob", Body=b"hi")
assert code_of(bob.put_object, Bucket=P, Key="elsewhere", Body=b"hi") == ("AccessDenied", 403)
assert "inbox/from-bob" in [o["Key"] for o in bob.list_objects_v2(Bucket=P)["Contents"]]
assert code_of(bob.get_object, Bucket=P, Key="private/b.txt") == ("AccessDenied", 403)
assert code_of(alice.delete_object, Bucket=P, Key="locked/c.txt") == ("AccessDenied", 403)
alice.delete_object(Bucket=P, Key="private/b.txt")
alice.delete_bucket_policy(Bucket=P)
assert code_of(bob.list_objects_v2, Bucket=P) == ("AccessDenied", 403)
alice.delete_object(Bucket=P, Key="locked/c.txt")

# POST object (browser form) with a SigV4-signed policy
import requests
form = alice.generate_presigned_post(B, "uploads/${filename}", Fields={"acl": "public-read", "x-amz-meta-origin": "form"},
    Conditions=[{"acl": "public-read"}, {"x-amz-meta-origin": "form"}, ["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1000]], ExpiresIn=300)
r = requests.post(form["url"], data=form["fields"], files={"file": ("photo.jpg", b"jpeg bytes")})
assert r.status_code == 204, (r.status_code, r.text)
assert urllib.request.urlopen(f"{url}/{B}/uploads/photo.jpg").read() == b"jpeg bytes"
assert alice.head_object(Bucket=B, Key="uploads/photo.jpg")["Metadata"] == {"origin": "form"}
r = requests.post(form["url"], data=form["fields"], files={"file": ("big.bin", b"x" * 1001)})
assert r.status_code == 400 and "<Code>EntityTooLarge</Code>" in r.text, (r.status_code, r.text)
tampered = dict(form["fields"], **{"x-amz-meta-origin": "forged"})
r = requests.post(form["url"], data=tampered, files={"file": ("f.txt", b"x")})
assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, (r.status_code, r.text)
extra = dict(form["fields"], **{"x-amz-meta-extra": "1"})
r = requests.post(form["url"], data=extra, files={"file": ("f.txt", b"x")})
assert r.status_code == 403 and "Extra input fields" in r.text, (r.status_code, r.text)
badsig = dict(form["fields"], **{"x-amz-signature": "0" * 64})
r = requests.post(form["url"], data=badsig, files={"file": ("f.txt", b"x")})
assert r.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in r.text, (r.status_code, r.text)
r = requests.post(form["url"], data={"key": "anon.txt"}, files={"file": ("f.txt", b"x")})
assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, (r.status_code, r.text)
r = requests.post(form["url"], data=dict(form["fields"], success_action_status="201"), files={"file": ("c.txt", b"created")})
assert r.status_code == 403 and "Extra input fields: success_action_status" in r.text, (r.status_code, r.text)
form201 = alice.generate_presigned_post(B, "uploads/${filename}", Fields={"success_action_status": "201"}, Conditions=[{"success_action_status": "201"}], ExpiresIn=300)
r = requests.post(form201["url"], data=form201["fields"], files={"file": ("c.txt", b"created")})
assert r.status_code == 201 and "<Key>uploads/c.txt</Key>" in r.text, (r.status_code, r.text)

# errors clients switch on
assert code_of(alice.get_object, Bucket=B, Key="nope") == ("NoSuchKey", 404)
assert code_of(alice.get_object, Bucket="no-such-bucket", Key="k") == ("NoSuchBucket", 404)
assert code_of(alice.create_bucket, Bucket="Bad_Name")[0] == "InvalidBucketName"
assert alice.get_bucket_location(Bucket=B)["LocationConstraint"] is None
print("OK")
