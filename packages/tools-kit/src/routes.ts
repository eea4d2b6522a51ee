// The tool router's HTTP routes, written once for the router (which serves them), the client (which calls
// them) and the Express adapter (which passes them on). Paths are relative to the router's base path.

/** The fixed paths. */
export const TOOL_ROUTES = {
  /** `GET`: the tool manifest the token may call (with an ETag). */
  manifest: '/tools',
  /** `GET ?threadId=`: the built-in state read. */
  state: '/state',
  /** `GET|PUT|DELETE ?threadId=` (PUT: in the body): the saved state of the token's paused run. */
  runState: '/run-state',
} as const;

/** `POST /tools/:name`: call a tool. */
const CALL_PREFIX = '/tools/';
/** `POST /needs-approval/:name`: whether this call of a tool must wait for a person. */
const NEEDS_APPROVAL_PREFIX = '/needs-approval/';

/** The path that calls tool `name`. */
export function toolCallPath(name: string): string {
  return `${CALL_PREFIX}${encodeURIComponent(name)}`;
}

/** The path that asks whether a call of tool `name` needs approval. */
export function needsApprovalPath(name: string): string {
  return `${NEEDS_APPROVAL_PREFIX}${encodeURIComponent(name)}`;
}

/**
 * A request path read as a route. For a route that names a tool, `name` is the decoded name, or undefined when
 * the path names no tool (empty, a further `/`, or malformed percent-encoding).
 */
export type ToolRoute =
  | { kind: 'manifest' | 'state' | 'run-state' }
  | { kind: 'call' | 'needs-approval'; name: string | undefined };

/** Reads a path (without the base path) as one of the router's routes; null when it is none of them. */
export function matchToolRoute(path: string): ToolRoute | null {
  if (path === TOOL_ROUTES.manifest) return { kind: 'manifest' };
  if (path === TOOL_ROUTES.state) return { kind: 'state' };
  if (path === TOOL_ROUTES.runState) return { kind: 'run-state' };
  if (path.startsWith(NEEDS_APPROVAL_PREFIX))
    return { kind: 'needs-approval', name: toolName(path.slice(NEEDS_APPROVAL_PREFIX.length)) };
  if (path.startsWith(CALL_PREFIX)) return { kind: 'call', name: toolName(path.slice(CALL_PREFIX.length)) };
  return null;
}

function toolName(segment: string): string | undefined {
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    return undefined;
  }
  return name === '' || name.includes('/') ? undefined : name;
}
