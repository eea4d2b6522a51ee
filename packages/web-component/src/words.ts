/*
 * What the user reads. Codes become sentences here; the technical message of an error goes to the console (and
 * to `agent-chat:error` for the page), never into the chat. Unknown codes (a host's own, a newer server's) get
 * the general sentence.
 */

/** A tool's name in words when it has no label: "profile.patch" → "Profile patch", "getWeather" → "Get weather". */
export function humanise(name: string): string {
  const words = name
    .replace(/([a-z\d])([A-Z])/g, '$1 $2')
    .replace(/[\s._:/-]+/g, ' ')
    .trim()
    .toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

const SOMETHING = 'Something went wrong.';
const BUSY = 'The service is busy. Try again in a moment.';
const INTERRUPTED = 'The answer was interrupted.';
const RESTARTED = 'The service restarted while answering.';

const RUN_ERRORS: Record<string, string> = {
  cancelled: 'Stopped.',
  model_error: 'The assistant could not answer just now.',
  max_turns_exceeded: 'The assistant took too many steps and stopped.',
  tool_client_error: 'A step the assistant needed did not work.',
  agent_unreachable: 'The assistant is not available right now.',
  agent_busy: BUSY,
  aborted: INTERRUPTED,
  agent_stream_ended: INTERRUPTED,
  agent_stream_invalid: INTERRUPTED,
  agent_idle_timeout: 'The assistant stopped responding.',
  relay_restarted: RESTARTED,
  owner_lost: RESTARTED,
  approval_expired: 'Nobody approved it in time.',
  shutdown: RESTARTED,
  store_error: 'The conversation could not be saved.',
  store_unavailable: 'The conversation could not be saved.',
};

/** The sentence for a RUN_ERROR `code`. */
export const runErrorText = (code: string | undefined): string => RUN_ERRORS[code ?? ''] ?? SOMETHING;

const PROBLEMS: Record<string, string> = {
  unauthorized: 'You were signed out. Sign in again.',
  forbidden: 'You do not have access to this conversation.',
  not_found: 'This conversation does not exist.',
  thread_deleted: 'This conversation was deleted.',
  run_active: 'The assistant is still answering. Wait for it or stop it.',
  nothing_to_regenerate: 'There is no message to answer again.',
  rate_limited: 'You are sending messages too fast. Wait a moment.',
  too_many_runs: 'You have too many answers in progress. Wait for one to end.',
  queue_full: BUSY,
  agent_unavailable: BUSY,
  too_many_subscribers: 'This conversation is open in too many places. Close some.',
  message_too_large: 'The message is too long.',
  invalid_message: 'The message could not be sent as it is.',
  store_error: 'The message could not be saved.',
  reconnect_exhausted: 'Could not reconnect.',
  transport_error: 'Could not connect.',
  connection_lost: 'The connection dropped before it was confirmed.',
};

/** The sentence for a server `error` code or an element problem code. */
export const problemText = (code: string): string => PROBLEMS[code] ?? SOMETHING;
