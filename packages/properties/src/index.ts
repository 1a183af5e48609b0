// @mallee/properties: the cloud properties' catalogue (names, types, defaults, descriptions) and the
// cached reader other daemons use to get theirs from the clc.
export * from './define.js';
export * from './catalogue.js';
export * from './reader.js';
