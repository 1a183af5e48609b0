// S3-specific protocol pieces: S3 SigV2, aws-chunked decoding, S3 XML and the S3 error envelope.
export * from './errors.js';
export * from './xml.js';
export * from './sigv2.js';
export * from './chunked.js';
