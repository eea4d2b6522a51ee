/** Safe HTTP tool endpoints with strict validation and scoped act-as tokens for Threadline agents. (agents: not built yet) */
export const PLACEHOLDER_AGENTS = true;
