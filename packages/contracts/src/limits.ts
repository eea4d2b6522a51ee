/** Wire protocol version. Bumped on a breaking change to any shape in this package. */
export const PROTOCOL_VERSION = 1 as const;

/**
 * Size limits that are part of the contract: every producer must stay within them and every consumer
 * rejects what exceeds them.
 */
export const LIMITS = {
  /** Longest id (threadId, runId, messageId, toolCallId, clientMessageId, userId). */
  maxIdLength: 128,
  /** Longest user message text, in UTF-16 code units. */
  maxMessageLength: 32_000,
  /** Longest single TEXT_MESSAGE_CHUNK delta (stores may coalesce chunks up to this size). */
  maxDeltaLength: 32_768,
  /** Longest tool name. */
  maxToolNameLength: 64,
  /** Longest human-readable label or error message. */
  maxLabelLength: 200,
  maxErrorMessageLength: 4_096,
  /** Longest error code string. */
  maxCodeLength: 64,
  /** Most tools one act-as token may name. */
  maxToolsPerToken: 64,
  /** Longest act-as token. */
  maxTokenLength: 8_192,
  /** Deepest nesting accepted in free-form JSON payloads. */
  maxJsonDepth: 32,
  /** Longest reason a person gives with an approval decision. */
  maxApprovalReasonLength: 1_000,
  /** Longest `retryAfterMs` hint of an `error` message (one day). */
  maxRetryAfterMs: 86_400_000,
} as const;

/** Ids are non-empty strings of letters, digits and `_ . : -`. */
export const ID_PATTERN = /^[A-Za-z0-9_.:-]+$/;

/** Tool names: a letter first, then letters, digits, `.`, `_` or `-` (e.g. `profile.patch`). */
export const TOOL_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9._-]*$/;
