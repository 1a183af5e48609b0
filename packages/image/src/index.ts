// @mallee/image: EC2/Eucalyptus image bundles — manifests, their RSA pieces, bundling and unbundling.
export * from './manifest.js';
export * from './crypto.js';
export * from './bundle.js';
export * from './unbundle.js';
