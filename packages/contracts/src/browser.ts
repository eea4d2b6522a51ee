import { z } from 'zod';
import { SequencedAgentEventSchema } from './events.js';
import { LIMITS } from './limits.js';
import { boundedString, CodeSchema, ErrorMessageSchema, IdSchema } from './primitives.js';

/** client → server: send a user message to a thread, starting a run. */
export const SendMessageSchema = z.strictObject({
  type: z.literal('send'),
  threadId: IdSchema,
  text: boundedString(LIMITS.maxMessageLength, { min: 1 }),
  clientMessageId: IdSchema,
});

/**
 * client → server: start a new answer to the thread's last user message, replacing the last answer, without
 * adding a user message. Idempotent on `clientMessageId` like `send` (a retry returns the first run's id).
 */
export const RegenerateMessageSchema = z.strictObject({
  type: z.literal('regenerate'),
  threadId: IdSchema,
  clientMessageId: IdSchema,
});

/** client → server: stream a thread's events with `seq > afterSeq`, then the live tail. */
export const SubscribeMessageSchema = z.strictObject({
  type: z.literal('subscribe'),
  threadId: IdSchema,
  afterSeq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
});

/** client → server: cancel a run. */
export const CancelMessageSchema = z.strictObject({
  type: z.literal('cancel'),
  runId: IdSchema,
});

/**
 * client → server: decide a tool call that waits for approval (TOOL_APPROVAL_REQUESTED). Only the thread's
 * owner may decide, once; an identical retry is answered like the first.
 */
export const ApproveMessageSchema = z.strictObject({
  type: z.literal('approve'),
  threadId: IdSchema,
  runId: IdSchema,
  toolCallId: IdSchema,
  approved: z.boolean(),
  reason: boundedString(LIMITS.maxApprovalReasonLength).optional(),
});

/** Every message a browser may send. */
export const ClientMessageSchema = z.discriminatedUnion('type', [
  SendMessageSchema,
  SubscribeMessageSchema,
  CancelMessageSchema,
  RegenerateMessageSchema,
  ApproveMessageSchema,
]);

/** server → client: one sequenced event. */
export const EventMessageSchema = z.strictObject({
  type: z.literal('event'),
  event: SequencedAgentEventSchema,
});

/** server → client: a `send` (or `regenerate`) was stored and its run started. */
export const AckMessageSchema = z.strictObject({
  type: z.literal('ack'),
  clientMessageId: IdSchema,
  runId: IdSchema,
});

/**
 * The refusals that come from the state of the thread's run, answered to a `send`, `regenerate` or `approve`
 * (the relay's `RelayError` codes and the browser's `error` codes both include them).
 */
export const RUN_REFUSAL_CODES = [
  /** The thread already has a run in progress. */
  'run_active',
  /** A `regenerate` on a thread without a user message to answer. */
  'nothing_to_regenerate',
  /** A `send` to a thread whose run waits for a tool approval. */
  'run_awaiting_approval',
  /** An `approve` for a run or tool call that does not wait for a decision. */
  'approval_not_pending',
  /** An `approve` that differs from the decision already made on that call. */
  'approval_already_decided',
] as const;
/** A code of {@link RUN_REFUSAL_CODES}. */
export type RunRefusalCode = (typeof RUN_REFUSAL_CODES)[number];

/** Error codes the server sends in `error` messages. */
export const BROWSER_ERROR_CODES = [
  'invalid_message',
  'invalid_json',
  'unauthorized',
  'forbidden',
  'not_found',
  ...RUN_REFUSAL_CODES,
  'queue_full',
  'slow_consumer',
  'rate_limited',
  'message_too_large',
  'too_many_subscribers',
  'too_many_connections',
  'too_many_runs',
  'store_error',
  'agent_unavailable',
  'internal_error',
  /** The thread was deleted (by its owner, maybe in another tab): its subscription ends. */
  'thread_deleted',
] as const;
/** A code of a server → client `error` message. */
export type BrowserErrorCode = (typeof BROWSER_ERROR_CODES)[number];

/**
 * server → client: something the client asked for failed. `ref` names what it refers to (a clientMessageId,
 * runId or threadId); `retryAfterMs`, on refusals such as `rate_limited`, says how long to wait before trying
 * again.
 */
export const ErrorMessageWireSchema = z.strictObject({
  type: z.literal('error'),
  code: CodeSchema,
  message: ErrorMessageSchema,
  ref: IdSchema.optional(),
  retryAfterMs: z.number().int().nonnegative().max(LIMITS.maxRetryAfterMs).optional(),
});

/** Every message a server may send. */
export const ServerMessageSchema = z.discriminatedUnion('type', [
  EventMessageSchema,
  AckMessageSchema,
  ErrorMessageWireSchema,
]);

/** client → server `send`. */
export type SendMessage = z.infer<typeof SendMessageSchema>;
/** client → server `regenerate`. */
export type RegenerateMessage = z.infer<typeof RegenerateMessageSchema>;
/** client → server `subscribe`. */
export type SubscribeMessage = z.infer<typeof SubscribeMessageSchema>;
/** client → server `cancel`. */
export type CancelMessage = z.infer<typeof CancelMessageSchema>;
/** client → server `approve`. */
export type ApproveMessage = z.infer<typeof ApproveMessageSchema>;
/** Any message a browser may send. */
export type ClientMessage = z.infer<typeof ClientMessageSchema>;
/** server → client `event` (one sequenced event). */
export type EventMessage = z.infer<typeof EventMessageSchema>;
/** server → client `ack`. */
export type AckMessage = z.infer<typeof AckMessageSchema>;
/** server → client `error`. */
export type ErrorMessage = z.infer<typeof ErrorMessageWireSchema>;
/** Any message a server may send. */
export type ServerMessage = z.infer<typeof ServerMessageSchema>;
