import type { ToolDef } from '../define-tool.js';

export const debugWebhookTools: ToolDef[] = [];
