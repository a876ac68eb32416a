export * from './tenancy.js';
export * from './audit.js';
export * from './connections.js';
export * from './automations.js';
