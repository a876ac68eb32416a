export * from './tenancy.js';
export * from './audit.js';
export * from './connections.js';
export * from './automations.js';
export * from './account-data.js';
export * from './executions.js';
export * from './operations.js';
export * from './templates.js';
