export * from './common.js';
export * as nc from './nc.js';
export * as cc from './cc.js';
export * as admin from './admin.js';
export * as walrus from './walrus.js';
export * as properties from './properties.js';
export * as sc from './sc.js';
