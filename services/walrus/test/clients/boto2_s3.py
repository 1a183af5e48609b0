"""boto 2 (Debian's python3-boto, S3 SigV2 'AWS key:sig' signing) against Walrus, path-style and under
/services/Walrus through boto.connect_walrus, as Eucalyptus clients address it. Prints OK when every check holds."""
import sys
from urllib.parse import urlparse

import boto
from boto.s3.connection import OrdinaryCallingFormat, S3Connection
from boto.exception import S3ResponseError

url, a_key, a_secret, a_id, b_key, b_secret, b_id = sys.argv[1:8]
u = urlparse(url)


def connect(path="/"):
    if path == "/services/Walrus":
        # As Eucalyptus users connect: boto's own connect_walrus (path-style, /services/Walrus, SigV2).
        return boto.connect_walrus(host=u.hostname, aws_access_key_id=a_key, aws_secret_access_key=a_secret, port=u.port)
    return S3Connection(aws_access_key_id=a_key, aws_secret_access_key=a_secret, host=u.hostname, port=u.port,
                        is_secure=False, calling_format=OrdinaryCallingFormat(), path=path)


for prefix in ["/", "/services/Walrus"]:
    c = connect(prefix)
    name = "boto2-bucket" if prefix == "/" else "boto2-walrus"
    b = c.create_bucket(name)
    k = b.new_key("dir/hello.txt")
    k.set_metadata("owner", "boto2")
    k.set_contents_from_string("hello from boto 2")
    got = b.get_key("dir/hello.txt")
    assert got.get_contents_as_string() == b"hello from boto 2"
    assert got.get_metadata("owner") == "boto2", got.metadata
    assert [x.name for x in b.list(prefix="dir/")] == ["dir/hello.txt"]
    assert [x.name for x in b.list(delimiter="/")] == ["dir/"]
    assert name in [x.name for x in c.get_all_buckets()]
    # SigV2 query-string authentication (presigned GET)
    signed = got.generate_url(300)
    import urllib.request
    assert urllib.request.urlopen(signed).read() == b"hello from boto 2"
    # multipart through boto 2
    mp = b.initiate_multipart_upload("mp.bin")
    import io
    mp.upload_part_from_file(io.BytesIO(b"x" * (5 * 1024 * 1024)), 1)
    mp.upload_part_from_file(io.BytesIO(b"tail"), 2)
    mp.complete_upload()
    assert b.get_key("mp.bin").size == 5 * 1024 * 1024 + 4
    # POST (browser form) with a SigV2-signed policy (boto 2's build_post_form_args is broken on Python 3)
    if prefix == "/":
        import base64, hashlib, hmac, json, requests
        policy = base64.b64encode(json.dumps({"expiration": "2099-01-01T00:00:00Z", "conditions": [
            {"bucket": name}, ["starts-with", "$key", "form/"], ["content-length-range", 0, 100]]}).encode()).decode()
        sig = base64.b64encode(hmac.new(a_secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()
        fields = {"key": "form/${filename}", "AWSAccessKeyId": a_key, "policy": policy, "signature": sig}
        r = requests.post(f"{url}/{name}", data=fields, files={"file": ("x.txt", b"posted")})
        assert r.status_code == 204, (r.status_code, r.text)
        assert b.get_key("form/x.txt").get_contents_as_string() == b"posted"
        r = requests.post(f"{url}/{name}", data=dict(fields, signature="AAAA"), files={"file": ("y.txt", b"posted")})
        assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text, (r.status_code, r.text)
    acl = got.get_acl()
    assert acl.owner.id == a_id
    got.set_canned_acl("public-read")
    assert any(g.uri and g.uri.endswith("AllUsers") for g in got.get_acl().acl.grants)
    try:
        b.get_key("missing").get_contents_as_string()
        raise AssertionError("expected an error")
    except (S3ResponseError, AttributeError):
        pass
    for key in b.list():
        key.delete()
    c.delete_bucket(name)

bad = S3Connection(aws_access_key_id=a_key, aws_secret_access_key="wrong", host=u.hostname, port=u.port, is_secure=False, calling_format=OrdinaryCallingFormat())
try:
    bad.get_all_buckets()
    raise AssertionError("wrong secret accepted")
except S3ResponseError as e:
    assert e.status == 403 and e.error_code == "SignatureDoesNotMatch", (e.status, e.error_code)
print("OK")
