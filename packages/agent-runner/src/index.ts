/** The Threadline agent service on the OpenAI Agents SDK: SSE run endpoint, sessions through the API, dashboard tracing. (index: not built yet) */
export const PLACEHOLDER_INDEX = true;
