import type { RequestHandler } from 'express';
import { HostError } from './errors.js';

/**
 * Security headers for every response. The CSP allows only this origin's scripts and styles: the pages have
 * no inline script or style, and `<agent-chat>` is served as a file from /assets. `connect-src 'self'` covers
 * the same-origin WebSocket in current browsers.
 */
export function securityHeaders(options: { hsts: boolean }): RequestHandler {
  const csp = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return (_req, res, next) => {
    res.setHeader('Content-Security-Policy', csp);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    res.setHeader('Permissions-Policy', 'camera=(), microphone=(), geolocation=()');
    if (options.hsts) res.setHeader('Strict-Transport-Security', 'max-age=15552000');
    next();
  };
}

/**
 * CSRF protection for cookie-authenticated state-changing routes: a browser always sends `Origin` on a
 * cross-site POST, so a present Origin must be on the allow-list; with no Origin, a `Sec-Fetch-Site` of
 * `cross-site` is refused too. Requests with neither header do not come from a browser page (curl, scripts)
 * and cannot ride on a victim's cookie.
 */
export function originCheck(isAllowed: (origin: string) => boolean): RequestHandler {
  return (req, _res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!isAllowed(origin)) return next(new HostError('cross_origin', 'Cross-site request refused.'));
    } else if (req.headers['sec-fetch-site'] === 'cross-site') {
      return next(new HostError('cross_origin', 'Cross-site request refused.'));
    }
    next();
  };
}

/** The allow-list of browser origins: PUBLIC_ORIGIN when set, else this server on localhost and 127.0.0.1. */
export function allowedOrigins(publicOrigin: string | undefined, port: number): string[] {
  if (publicOrigin !== undefined) return [publicOrigin];
  return [`http://localhost:${port}`, `http://127.0.0.1:${port}`];
}
