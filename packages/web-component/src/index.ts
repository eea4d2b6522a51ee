/** <agent-chat> (not built yet) */
export const PLACEHOLDER = true;
