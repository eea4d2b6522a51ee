// `@threadline/contracts/core`: the parts of the contract that need no zod (limits, id pattern, protocol version,
// the error-brand check, the request headers an HTTP adapter does not forward), for code that must stay small,
// such as the browser element's bundle.
export * from './limits.js';
export { isBrandedInstance } from './brand.js';
export { NOT_FORWARDED_REQUEST_HEADERS } from './http-headers.js';
