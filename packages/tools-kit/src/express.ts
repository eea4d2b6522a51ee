/** Safe HTTP tool endpoints with strict validation and scoped act-as tokens for Threadline agents. (express: not built yet) */
export const PLACEHOLDER_EXPRESS = true;
