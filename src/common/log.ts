// Structured logs: one JSON object a line on stderr (stdout stays for what a command prints).
import { pino } from 'pino'

export type Logger = pino.Logger
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export function createLogger(role: string, level: LogLevel = 'info'): Logger {
  return pino({ level, base: { role, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2))
}
