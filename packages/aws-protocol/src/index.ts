// @mallee/aws-protocol: EC2/S3 Query parsing, SigV2 + SigV4, AWS XML responses and error envelopes.
export * from './errors.js';
export * from './action.js';
export * from './query.js';
export * from './sigv4.js';
export * from './sigv2.js';
export * from './xml.js';
export * from './plugin.js';
export * from './envelopes.js';
export * from './s3/index.js';
