// `@threadline/contracts/core`: the parts of the contract that need no zod (limits, id pattern, protocol version,
// the error-brand check), for code that must stay small, such as the browser element's bundle.
export * from './limits.js';
export { isBrandedInstance } from './brand.js';
export { EVENT_TYPES } from './event-types.js';
export type { EventType } from './event-types.js';
