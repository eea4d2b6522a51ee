/** Safe HTTP tool endpoints with strict validation and scoped act-as tokens for Threadline agents. (index: not built yet) */
export const PLACEHOLDER_INDEX = true;
