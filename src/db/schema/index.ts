export * from './tenancy.js';
export * from './audit.js';
