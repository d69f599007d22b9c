// Who may use the dashboard's API: whoever holds the cluster's dashboard token,
// an HMAC of the cluster secret (so it changes with the secret, and the secret
// itself never travels to a browser). The page hands it over once as ?token=,
// and keeps it in an HttpOnly, same-site cookie. The API acts with the
// namenode's own rights, so nothing under /api/ answers without it.
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

export const DASHBOARD_COOKIE = 'loam_dashboard'
const LABEL = 'loam dashboard access v1'

export function dashboardToken(secret: Buffer): string {
  return createHmac('sha256', secret).update(LABEL).digest('hex').slice(0, 40)
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** The token a request carries: `Authorization: Bearer T`, else the cookie, else `?token=`. */
export function presentedToken(req: IncomingMessage, query: URLSearchParams): string {
  const auth = req.headers.authorization ?? ''
  if (auth.startsWith('Bearer ')) return auth.slice(7).trim()
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, v] = part.trim().split('=')
    if (k === DASHBOARD_COOKIE && v) return v
  }
  return query.get('token') ?? ''
}

export function allowed(req: IncomingMessage, query: URLSearchParams, token: string): boolean {
  return same(presentedToken(req, query), token)
}

export function tokenCookie(token: string): string {
  return `${DASHBOARD_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`
}
