import type { ToolDef } from '../define-tool.js';

export const healthTools: ToolDef[] = [];
